"""Guarantees of the contract rules that mutants of policy.py and decisions.py broke
unnoticed (bench/mutation.py): the model-id allowlist, what a denial tells the caller (the
limit hit, whose it is), and the contract book the decisions read."""

from __future__ import annotations

import pytest

from modelserve.contract.decisions import ContractBook, default_limits
from modelserve.contract.policy import (
    Action,
    Principal,
    Reason,
    Resource,
    Scope,
    check_request,
    check_totals,
    inference_charges,
    scopes,
)
from modelserve.contract.settings import ContractSettings
from modelserve.contract.tables import Contract, Limits, Period, SubjectKind


def scope(**limits: object) -> Scope:
    return Scope("user:alice", "user alice", Limits.model_validate(limits))


def test_a_model_id_outside_the_model_allowlist_is_refused() -> None:
    # The served name is allowed; the weights' model record is not: refused all the same.
    limits = scope(models=["smollm2-*"])
    resource = Resource(model="smollm2-135m", model_id="llama-70b")
    denial = check_request(Action.INFER, resource, limits)
    assert denial is not None and not denial.allowed
    assert denial.reason is Reason.MODEL
    assert denial.message == "user alice may not use model id 'llama-70b' (allowed: smollm2-*)"
    assert denial.limit == ["smollm2-*"]
    inside = Resource(model="smollm2-135m", model_id="smollm2-360m")
    assert check_request(Action.INFER, inside, limits) is None


def test_a_denial_names_who_is_limited_and_the_patterns_allowed() -> None:
    limits = scope(models=["a-*", "b"], namespaces=["team-a"], runtimes=["vllm"])
    model = check_request(Action.INFER, Resource(model="c"), limits)
    assert model is not None
    assert model.message == "user alice may not use model 'c' (allowed: a-*, b)"
    assert model.limit == ["a-*", "b"]
    namespace = check_request(
        Action.SERVE, Resource(model="b", namespace="x", runtime="vllm"), limits
    )
    assert namespace is not None and namespace.reason is Reason.NAMESPACE
    assert namespace.message == (
        "user alice may not run servers in namespace 'x' (allowed: team-a)"
    )
    runtime = check_request(
        Action.SERVE, Resource(model="b", namespace="team-a", runtime="llamacpp"), limits
    )
    assert runtime is not None and runtime.reason is Reason.RUNTIME
    assert runtime.message == "user alice may not use runtime 'llamacpp' (allowed: vllm)"


def test_a_total_over_its_limit_says_which_limit() -> None:
    servers = check_totals(scope(max_servers=2), servers=2, gpus=0, resource=Resource())
    assert servers is not None and servers.reason is Reason.SERVERS
    assert servers.limit == 2
    gpus = check_totals(scope(max_gpus=4), servers=0, gpus=3, resource=Resource(gpus=2))
    assert gpus is not None and gpus.reason is Reason.GPUS
    assert gpus.limit == 4


def test_charges_carry_whose_counter_they_are() -> None:
    charges = inference_charges([scope(requests_per_minute=5)], tokens=10)
    assert {charge.label for charge in charges} == {"user alice"}


def test_a_team_scope_is_labelled_with_the_team() -> None:
    alice = Principal(subject="alice", teams=["nlp"])
    both = scopes(alice, "nlp", Limits(), {}, {"nlp": Limits(max_servers=3)})
    assert [(s.key, s.label) for s in both] == [
        ("user:alice", "user alice"),
        ("team:nlp", "team nlp"),
    ]


def test_default_limits_read_the_settings_and_a_star_means_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JWT_SECRET", "contract-mutants-test-secret-of-32-bytes")
    settings = ContractSettings(
        default_models="*",
        default_runtimes="vllm, llamacpp",
        default_namespaces="default",
        default_budget_period="day",
        default_max_replicas=5,
        default_max_gpus=8,
        default_max_servers=3,
        default_max_budget=16,
        default_requests_per_minute=60,
        default_tokens_per_minute=6000,
        default_token_budget=100000,
        default_downloads=False,
    )
    limits = default_limits(settings)
    assert limits.models is None
    assert limits.runtimes == ["vllm", "llamacpp"]
    assert limits.namespaces == ["default"]
    assert limits.budget_period is Period.DAY
    assert (limits.max_replicas, limits.max_gpus, limits.max_servers) == (5, 8, 3)
    assert limits.max_budget == 16
    assert (limits.requests_per_minute, limits.tokens_per_minute) == (60, 6000)
    assert limits.token_budget == 100000
    assert limits.downloads is False
    named = default_limits(ContractSettings(default_models="smollm2-*, qwen"))
    assert named.models == ["smollm2-*", "qwen"]


def test_the_book_merges_a_users_contract_with_the_defaults_and_keeps_teams_as_they_are() -> None:
    book = ContractBook(Limits(max_replicas=5, namespaces=["default"]))
    # Before any load: a user without a contract has the defaults; removing is harmless.
    bob = book.scopes(Principal(subject="bob"), None)
    assert [(s.key, s.limits) for s in bob] == [("user:bob", book.defaults)]
    book.remove(SubjectKind.USER, "nobody")
    book.put(Contract(kind=SubjectKind.TEAM, name="early", max_servers=1))
    assert book.teams["early"].max_servers == 1
    book.load(
        [
            Contract(kind=SubjectKind.USER, name="alice", max_gpus=2),
            Contract(kind=SubjectKind.TEAM, name="nlp", max_servers=3),
        ]
    )
    assert book.users["alice"].max_gpus == 2
    assert book.users["alice"].max_replicas == 5  # from the defaults
    assert book.teams["nlp"].max_servers == 3
    assert book.teams["nlp"].max_replicas is None  # defaults are for people
    alice = Principal(subject="alice", teams=["nlp"])
    assert [s.key for s in book.scopes(alice, "nlp")] == ["user:alice", "team:nlp"]
    book.remove(SubjectKind.TEAM, "nlp")
    assert book.teams == {}
    assert "alice" in book.users
    book.remove(SubjectKind.USER, "alice")
    assert book.users == {}
    # A reload starts from nothing: a contract gone from the store is gone from the book.
    book.put(Contract(kind=SubjectKind.USER, name="bob", max_gpus=1))
    book.load([])
    assert (book.users, book.teams) == ({}, {})
