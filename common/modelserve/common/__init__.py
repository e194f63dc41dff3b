"""Code every ModelServe component shares: settings, the health endpoint. Kept small."""

__version__ = "0.2.0"
