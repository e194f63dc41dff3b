"""The rules alone: limits merged, requests checked, totals counted, charges listed."""

from __future__ import annotations

from modelserve.contract.policy import (
    Action,
    Principal,
    Reason,
    Resource,
    Scope,
    acting_team,
    check_request,
    check_totals,
    effective_limits,
    inference_charges,
    scopes,
)
from modelserve.contract.tables import Limits, Period

DEFAULTS = Limits(namespaces=["default", "inference"], max_replicas=5, downloads=False)


def scope(**limits: object) -> Scope:
    return Scope("user:alice", "user alice", Limits.model_validate(limits))


def test_a_contract_overrides_the_defaults_only_where_it_sets_something() -> None:
    merged = effective_limits(DEFAULTS, Limits(max_replicas=2, max_gpus=4))
    assert merged.max_replicas == 2
    assert merged.max_gpus == 4
    assert merged.namespaces == ["default", "inference"]
    assert effective_limits(DEFAULTS, None) == DEFAULTS


def test_the_acting_team_must_be_one_of_the_principals() -> None:
    alice = Principal(subject="alice", teams=["nlp", "vision"])
    assert acting_team(alice, Resource()) == "nlp"
    assert acting_team(alice, Resource(team="vision")) == "vision"
    denial = acting_team(alice, Resource(team="finance"))
    assert not isinstance(denial, str) and denial is not None
    assert denial.reason is Reason.NOT_A_MEMBER
    assert acting_team(Principal(subject="bob"), Resource()) is None


def test_a_team_scope_applies_only_when_the_team_has_a_contract() -> None:
    alice = Principal(subject="alice", teams=["nlp"])
    only_user = scopes(alice, "nlp", DEFAULTS, {}, {})
    assert [s.key for s in only_user] == ["user:alice"]
    both = scopes(alice, "nlp", DEFAULTS, {}, {"nlp": Limits(max_servers=3)})
    assert [s.key for s in both] == ["user:alice", "team:nlp"]
    assert both[1].limits.max_replicas is None  # defaults are for people, not teams


def test_serve_is_checked_against_each_allowlist_and_the_replica_limit() -> None:
    limits = scope(
        models=["smollm2-*"], runtimes=["llamacpp"], namespaces=["team-a"], max_replicas=2
    )
    fine = Resource(namespace="team-a", model="smollm2-135m", runtime="llamacpp", replicas=2)
    assert check_request(Action.SERVE, fine, limits) is None
    cases = {
        Reason.MODEL: fine.model_copy(update={"model": "llama-70b"}),
        Reason.RUNTIME: fine.model_copy(update={"runtime": "vllm"}),
        Reason.NAMESPACE: fine.model_copy(update={"namespace": "team-b"}),
        Reason.REPLICAS: fine.model_copy(update={"replicas": 3}),
    }
    for reason, resource in cases.items():
        denial = check_request(Action.SERVE, resource, limits)
        assert denial is not None and denial.reason is reason, reason
        assert not denial.allowed
    replicas = check_request(Action.SERVE, cases[Reason.REPLICAS], limits)
    assert replicas is not None
    assert replicas.limit == 2
    assert "3 replicas is over the limit of 2" in replicas.message


def test_inference_checks_the_model_and_the_scaling_budget() -> None:
    limits = scope(models=["smollm2-*"], max_budget=8)
    assert check_request(Action.INFER, Resource(model="smollm2-1", budget=8), limits) is None
    over = check_request(Action.INFER, Resource(model="smollm2-1", budget=9), limits)
    assert over is not None and over.reason is Reason.BUDGET and over.limit == 8
    other = check_request(Action.INFER, Resource(model="gpt"), limits)
    assert other is not None and other.reason is Reason.MODEL


def first_denial(action: Action, resource: Resource, checked: list[Scope]) -> Reason | None:
    """What the decider does with the scopes of a request: the first denial, if any."""
    for each in checked:
        denial = check_request(action, resource, each)
        if denial is not None:
            return denial.reason
    return None


def test_a_download_needs_a_contract_that_allows_it() -> None:
    alice = Principal(subject="alice")
    smollm2 = Resource(model="smollm2-135m")
    # A contract that says nothing of downloads leaves the default: no.
    users = {"alice": effective_limits(DEFAULTS, Limits(max_gpus=1))}
    denial = check_request(Action.DOWNLOAD, smollm2, scopes(alice, None, DEFAULTS, users, {})[0])
    assert denial is not None and denial.reason is Reason.DOWNLOADS
    assert not denial.allowed
    assert denial.message == "user alice may not download models"
    assert check_request(Action.DOWNLOAD, smollm2, scope(downloads=True)) is None
    # The model allowlist holds for downloads too.
    elsewhere = Resource(model="llama-70b")
    other = check_request(Action.DOWNLOAD, elsewhere, scope(downloads=True, models=["smollm2-*"]))
    assert other is not None and other.reason is Reason.MODEL


def test_a_team_contract_can_forbid_downloads_but_not_grant_them() -> None:
    alice = Principal(subject="alice", teams=["nlp"])
    smollm2 = Resource(model="smollm2-135m")
    allowed = {"alice": effective_limits(DEFAULTS, Limits(downloads=True))}

    def reason(users: dict[str, Limits], team: Limits) -> Reason | None:
        return first_denial(
            Action.DOWNLOAD, smollm2, scopes(alice, "nlp", DEFAULTS, users, {"nlp": team})
        )

    assert reason(allowed, Limits(downloads=False)) is Reason.DOWNLOADS
    # A team contract that leaves downloads unset leaves them to each member's own.
    assert reason(allowed, Limits(max_servers=3)) is None
    assert reason({}, Limits(downloads=True)) is Reason.DOWNLOADS
    forbidden = check_request(
        Action.DOWNLOAD, smollm2, Scope("team:nlp", "team nlp", Limits(downloads=False))
    )
    assert forbidden is not None and forbidden.message == "team nlp may not download models"


def test_totals_count_the_new_server_on_top_of_what_runs() -> None:
    limits = scope(max_servers=2, max_gpus=4)
    one_gpu = Resource(namespace="n", name="x", gpus=1, replicas=2)
    assert check_totals(limits, servers=1, gpus=2, resource=one_gpu) is None
    servers = check_totals(limits, servers=2, gpus=0, resource=one_gpu)
    assert servers is not None and servers.reason is Reason.SERVERS
    gpus = check_totals(limits, servers=0, gpus=3, resource=one_gpu)
    assert gpus is not None and gpus.reason is Reason.GPUS
    assert "would use 5 GPUs (3 already, 2 more); the limit is 4" in gpus.message


def test_an_inference_counts_a_request_and_reserves_tokens_in_each_limited_window() -> None:
    user = scope(requests_per_minute=10, token_budget=1000, budget_period=Period.DAY)
    team = Scope("team:nlp", "team nlp", Limits(tokens_per_minute=500))
    charges = inference_charges([user, team], tokens=100)
    # In the order every writer locks counter rows: by scope, then metric. Budgets are
    # always counted; a minute's window only under a limit.
    assert [(c.scope, c.metric, c.unit, c.used, c.reserved, c.limit) for c in charges] == [
        ("team:nlp", "tokens/minute", "minute", 0, 100, 500),
        ("team:nlp", "tokens/month", "month", 0, 100, None),
        ("user:alice", "requests/minute", "minute", 1, 0, 10),
        ("user:alice", "tokens/day", "day", 0, 100, 1000),
    ]
