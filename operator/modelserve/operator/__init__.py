"""The kopf operator that reconciles ModelServe resources into model servers."""
