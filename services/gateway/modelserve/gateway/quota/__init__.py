"""Leased quota: inference decided in the gateway's process, limits exact across replicas.

The contract service leases slices of each limited counter (a user's or team's request
rate, token rate, token budget) to a gateway process; the process decides requests from
them with the contract's own rules, and its usage records settle what each request took.
`client` speaks POST /leases, `principals` keeps what the contract says of each caller,
`slices` is the pure bookkeeping of the leases, `ledger` decides and keeps it all going.
See docs/gateway.md#decisions-from-leased-quota.
"""
