"""The pure bookkeeping of the gateway's slices (modelserve.gateway.quota.slices): which
lease a hold comes from, when a lease stops being used, what an ask wants, when to refill
ahead, what a housekeeping pass renews and gives back."""

from __future__ import annotations

from modelserve.contract.policy import Scope
from modelserve.contract.tables import Limits
from modelserve.gateway.quota.client import PrincipalView, parse_answer
from modelserve.gateway.quota.principals import changed, limited
from modelserve.gateway.quota.slices import (
    IDLE_SECONDS,
    MARGIN_SECONDS,
    Lease,
    Slice,
    hold_of,
)

T = 1000.0  # a monotonic time


def lease(granted: int, *, taken: int = 0, ttl: float = 30.0, window: float = 60.0) -> Lease:
    return Lease("l", granted, window_end=T + window, renewed=T, ttl=ttl, taken=taken)


def test_a_request_holds_one_and_tokens_hold_their_count() -> None:
    assert hold_of("requests/minute", 512) == 1
    assert hold_of("tokens/minute", 512) == 512
    assert hold_of("tokens/month", 0) == 0


def test_a_lease_is_used_until_its_expiry_less_the_margin_or_its_window_end() -> None:
    assert lease(5, ttl=30, window=60).deadline == T + 30 - MARGIN_SECONDS
    # Its window's end (counted from the send time) is never later than the contract's.
    assert lease(5, ttl=30, window=10).deadline == T + 10
    assert lease(5, ttl=30, window=10).usable(T + 9.99)
    short = lease(5, ttl=3)
    assert short.usable(T + 2.7)
    assert not short.usable(T + 3 - MARGIN_SECONDS)
    short.renew(T + 2, 3)
    assert short.usable(T + 4.7)


def test_a_hold_comes_whole_from_the_oldest_lease_with_room() -> None:
    piece = Slice("user:a", "tokens/month", 1000)
    old, new = lease(100, taken=60), lease(500)
    piece.leases = [old, new]
    assert piece.lease_for(40, T) is old
    assert piece.lease_for(41, T) is new  # never split over two leases
    assert piece.lease_for(501, T) is None
    piece.take(old, 40, T + 1)
    assert (old.left, piece.remaining(T + 1), piece.bucket, piece.last_take) == (0, 500, 40, T + 1)
    # A lease past its deadline holds nothing.
    assert piece.lease_for(1, T + 40) is None
    assert piece.remaining(T + 40) == 0


def test_a_short_ask_wants_what_waits_plus_a_refill() -> None:
    piece = Slice("user:a", "requests/minute", 100, tick_started=T)
    assert piece.short_ask(1, T) == (2, 1)  # no rate yet: the hold, and one more
    piece.waiting = 9
    assert piece.short_ask(1, T) == (11, 10)
    piece.waiting, piece.rate = 0, 4.0
    assert piece.short_ask(1, T) == (9, 1)  # two seconds of 4 a second
    piece.rate = 20.0
    assert piece.short_ask(1, T) == (26, 1)  # not 40: a quarter of the limit at most
    piece.waiting = 49
    assert piece.short_ask(1, T) == (75, 50)  # what waits is never cut
    tokens = Slice("user:a", "tokens/month", 10_000)
    assert tokens.short_ask(0, T) == (1, 1)  # a hold of nothing still needs a lease
    # Never over the limit: the rest would only sit in this process, away from the
    # other replicas (and past 2^63, the contract refuses the ask).
    assert tokens.short_ask(9_000, T) == (10_000, 9_000)
    tokens.waiting = 5_000
    assert tokens.short_ask(9_000, T) == (10_000, 10_000)
    assert tokens.short_ask(2**62, T) == (10_000, 10_000)


def test_retiring_takes_out_the_leases_too_small_for_the_hold() -> None:
    piece = Slice("user:a", "tokens/month", 1000)
    small, big, stale = lease(100, taken=90), lease(500), lease(900, ttl=1)
    piece.leases = [small, big, stale]
    assert piece.retire(20, T + 2) == [small, stale]
    assert piece.leases == [big]


def test_refill_ahead_when_the_rest_lasts_under_a_second() -> None:
    piece = Slice("user:a", "requests/minute", 1000, tick_started=T)
    piece.leases = [lease(10)]
    assert piece.refill_wanted(1, T + 0.5) == 0  # no take rate yet
    piece.bucket = 4  # four taken half a second into the tick: 8 a second
    assert piece.refill_wanted(1, T + 0.5) == 0  # 10 left last longer than a second
    piece.leases[0].taken = 3
    assert piece.refill_wanted(1, T + 0.5) == 16  # 7 left: two seconds' worth
    piece.limit = 40
    assert piece.refill_wanted(1, T + 0.5) == 10  # a quarter of the limit at most
    assert piece.refill_wanted(40, T + 0.5) == 40  # a hold at least
    piece.limit = 20
    assert piece.refill_wanted(1, T + 0.5) == 0  # a quarter of the limit is left
    piece.limit = 1000
    piece.refill_after = T + 1
    assert piece.refill_wanted(1, T + 0.5) == 0
    piece.refill_after, piece.exhausted_until = 0, T + 1
    assert piece.refill_wanted(1, T + 0.5) == 0


def test_the_take_rate_is_smoothed_over_ticks() -> None:
    piece = Slice("user:a", "requests/minute", 100, tick_started=T)
    piece.bucket = 10
    piece.tick(T + 1)
    assert (piece.rate, piece.bucket, piece.tick_started) == (5.0, 0, T + 1)
    piece.tick(T + 2)
    assert piece.rate == 2.5
    piece.bucket = 7  # in the first half of a tick: 14 a second
    assert piece.take_rate(T + 2.5) == 14.0
    piece.bucket = 1  # a request right at the start of a tick: measured over 0.1 s
    assert piece.take_rate(T + 2.001) == 10.0
    assert piece.take_rate(T + 2.9) == 2.5


def test_housekeeping_renews_after_a_third_and_gives_back_the_rest() -> None:
    piece = Slice("user:a", "requests/minute", 100, last_take=T + 9)
    fresh, due, used_up, expired = (
        lease(10),
        lease(10),
        lease(10, taken=10),
        lease(10, ttl=5),
    )
    fresh.renewed = T + 5
    piece.leases = [fresh, due, used_up, expired]
    renew, give_back = piece.due(T + 10)
    assert renew == [due]
    assert give_back == [used_up, expired]
    assert piece.leases == [fresh, due]
    # Idle: everything goes back.
    renew, give_back = piece.due(T + 9 + IDLE_SECONDS)
    assert (renew, give_back, piece.leases) == ([], [fresh, due], [])


def test_changed_limits_name_the_counters_to_grant_anew() -> None:
    def view(**limits: object) -> PrincipalView:
        user = Scope("user:a", "user a", Limits.model_validate(limits))
        team = Scope("team:t", "team t", Limits(requests_per_minute=50))
        return PrincipalView(admin=False, team="t", scopes=(user, team))

    before = view(requests_per_minute=10, token_budget=1000)
    assert limited(before) == {
        ("user:a", "requests/minute"): 10,
        ("user:a", "tokens/month"): 1000,
        ("team:t", "requests/minute"): 50,
    }
    assert changed(before, before) == set()
    after = view(requests_per_minute=20, token_budget=1000, budget_period="day")
    assert changed(before, after) == {("user:a", "requests/minute"), ("user:a", "tokens/month")}


def test_an_answer_of_post_leases_is_parsed() -> None:
    answer = parse_answer(
        b'{"ttl": 30.0, "principal": {"admin": false, "team": "nlp", "scopes": ['
        b'{"key": "user:a", "label": "user a", "limits": {"requests_per_minute": 5}}]},'
        b' "leases": [{"scope": "user:a", "metric": "requests/minute", "lease": "x",'
        b' "granted": 5, "limit": 5, "window_ends_in": 41.5}], "renewed": ["y"]}'
    )
    assert answer.ttl == 30.0
    assert answer.principal is not None
    assert answer.principal.team == "nlp"
    assert answer.principal.scopes[0].limits.requests_per_minute == 5
    (grant,) = answer.leases
    assert (grant.lease, grant.granted, grant.limit, grant.window_ends_in) == ("x", 5, 5, 41.5)
    assert answer.renewed == {"y"}
