"""One router per resource: downloads (jobs) and models (records)."""
