"""The gateway: auth, model management and the OpenAI-compatible proxy."""
