"""The contract service's settings, as a deployment's environment gives them."""

from __future__ import annotations

import pytest

from modelserve.contract.settings import ContractSettings


@pytest.fixture(autouse=True)
def signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "contract-settings-test-secret-of-32-bytes")


def test_a_limit_set_empty_is_no_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # A helm value of null, or a variable left empty, must mean "no limit", not fail.
    monkeypatch.setenv("CONTRACT_DEFAULT_MAX_REPLICAS", "")
    monkeypatch.setenv("CONTRACT_DEFAULT_TOKEN_BUDGET", " ")
    settings = ContractSettings()
    assert settings.default_max_replicas is None
    assert settings.default_token_budget is None


def test_limits_are_read_and_defaulted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ContractSettings().default_max_replicas == 5
    monkeypatch.setenv("MAX_REPLICAS", "3")  # the seeds' name
    monkeypatch.setenv("CONTRACT_DEFAULT_MAX_GPUS", "8")
    settings = ContractSettings()
    assert (settings.default_max_replicas, settings.default_max_gpus) == (3, 8)


def test_a_bad_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRACT_DEFAULT_MAX_GPUS", "many")
    with pytest.raises(ValueError, match=r"default_max_gpus|MAX_GPUS"):
        ContractSettings()


def test_the_cache_bound_is_a_quantity_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ContractSettings().max_cache_size == "1Ti"
    monkeypatch.setenv("CONTRACT_MAX_CACHE_SIZE", " 500Gi ")
    assert ContractSettings().max_cache_size == "500Gi"
    monkeypatch.setenv("CONTRACT_MAX_CACHE_SIZE", "")
    assert ContractSettings().max_cache_size == ""  # no bound
    monkeypatch.setenv("CONTRACT_MAX_CACHE_SIZE", "lots")
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        ContractSettings()


@pytest.mark.parametrize(("variable", "default"), [("CPU", "32"), ("MEMORY", "256Gi")])
def test_the_pod_bounds_are_quantities_or_empty(
    monkeypatch: pytest.MonkeyPatch, variable: str, default: str
) -> None:
    field = f"max_{variable.lower()}"
    assert getattr(ContractSettings(), field) == default
    monkeypatch.setenv(f"CONTRACT_MAX_{variable}", "")
    assert getattr(ContractSettings(), field) == ""  # no bound
    monkeypatch.setenv(f"CONTRACT_MAX_{variable}", "all of it")
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        ContractSettings()
