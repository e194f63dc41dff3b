"""The download service: models streamed into the platform store, verified, recorded."""
