"""The contract service: contracts, decisions, usage and the admission webhook."""
