"""Usage and limits as the caller may read them: the contract service's GET /usage,
GET /usage/daily, GET /contracts/me and GET /contracts/limits passed through as the
caller (docs/contract.md). (`gateway/usage.py` is something else: the token usage of
proxied answers.)"""
