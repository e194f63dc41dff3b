"""The docs tests' platform: `dev` (make dev's, started once per session for the pages
whose commands run and for tests/client) is in tests/conftest.py."""
