"""The chart's production settings as rendered: PodDisruptionBudgets that can always be
satisfied, the gateway's HorizontalPodAutoscaler (opt-in), topology spread, measured
resources; and the real API server accepting them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelserve.testbed.helm import CHART, Helm, find
from modelserve.testbed.kube import KubeCluster

RELEASE = "modelserve"
NAMESPACE = "modelserve"
SERVICES = ("gateway", "contract", "download", "jobs")
AUTOSCALING = {"gateway": {"autoscaling": {"enabled": True}}}


def _kinds(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def _budgets(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """PodDisruptionBudgets by component."""
    return {
        obj["metadata"]["labels"]["app.kubernetes.io/component"]: obj
        for obj in objects
        if obj["kind"] == "PodDisruptionBudget"
    }


def _deployment(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return find(objects, "Deployment", f"{RELEASE}-{component}")


def _pod_labels(objects: list[dict[str, Any]], component: str) -> dict[str, str]:
    labels: dict[str, str] = _deployment(objects, component)["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def _min(count: int | str, **more: Any) -> dict[str, Any]:
    """A component's values with a budget of minAvailable `count` (and `more` values)."""
    return {"podDisruptionBudget": {"minAvailable": count, "maxUnavailable": None}, **more}


def _max(count: int | str) -> dict[str, Any]:
    return {"podDisruptionBudget": {"maxUnavailable": count}}


@pytest.fixture(scope="module")
def rendered(offline_helm: Helm) -> list[dict[str, Any]]:
    return offline_helm.template(RELEASE, NAMESPACE)


# --- PodDisruptionBudgets ------------------------------------------------------------------


def test_each_service_has_a_budget_that_selects_its_own_pods(
    rendered: list[dict[str, Any]],
) -> None:
    budgets = _budgets(rendered)
    # Not the operator: one replica, where a budget either blocks drains or allows anything.
    assert sorted(budgets) == sorted(SERVICES)
    for component, budget in budgets.items():
        assert budget["apiVersion"] == "policy/v1"
        assert budget["metadata"]["name"] == f"{RELEASE}-{component}"
        assert budget["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in budget["spec"]
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        selector = budget["spec"]["selector"]
        assert selector == _deployment(rendered, component)["spec"]["selector"]
        for other in (*SERVICES, "operator"):
            assert _selects(selector, _pod_labels(rendered, other)) is (other == component)


@pytest.mark.parametrize(
    ("values", "component"),
    [
        ({"contract": _min(2)}, "contract"),
        ({"contract": _min("100%")}, "contract"),
        # 50% of one pod rounds up to one: nothing may go.
        ({"download": _min("50%")}, "download"),
        ({"download": _min(1)}, "download"),
        ({"jobs": _max(0)}, "jobs"),
        ({"jobs": _max("0%")}, "jobs"),
        # The gateway runs its replicas (2); with its autoscaler, as few as minReplicas (2).
        ({"gateway": _min(2)}, "gateway"),
        ({"gateway": _min(2, autoscaling={"enabled": True}, replicas=3)}, "gateway"),
        ({"gateway": {"podDisruptionBudget": {"enabled": False}}}, "gateway"),
    ],
)
def test_a_budget_that_would_block_every_drain_is_left_out(
    offline_helm: Helm, values: dict[str, Any], component: str
) -> None:
    budgets = _budgets(offline_helm.template(RELEASE, NAMESPACE, values))
    assert sorted(budgets) == sorted(set(SERVICES) - {component})


@pytest.mark.parametrize(
    ("values", "component", "field", "value"),
    [
        ({"contract": _min(1)}, "contract", "minAvailable", 1),
        ({"contract": _min("50%")}, "contract", "minAvailable", "50%"),
        ({"download": _min(2, replicas=3)}, "download", "minAvailable", 2),
        ({"jobs": _max("25%")}, "jobs", "maxUnavailable", "25%"),
        (
            {"gateway": _min(2, autoscaling={"enabled": True, "minReplicas": 3}, replicas=1)},
            "gateway",
            "minAvailable",
            2,
        ),
        ({"gateway": _min(3, replicas=4)}, "gateway", "minAvailable", 3),
    ],
)
def test_a_budget_that_leaves_room_is_made_as_given(
    offline_helm: Helm, values: dict[str, Any], component: str, field: str, value: Any
) -> None:
    budget = _budgets(offline_helm.template(RELEASE, NAMESPACE, values))[component]
    assert budget["spec"][field] == value
    assert {"minAvailable", "maxUnavailable"} & set(budget["spec"]) == {field}


@pytest.mark.parametrize(
    "budget",
    [{"minAvailable": 1, "maxUnavailable": 1}, {"minAvailable": None, "maxUnavailable": None}],
    ids=["both", "neither"],
)
def test_a_budget_needs_exactly_one_of_min_and_max(
    offline_helm: Helm, budget: dict[str, Any]
) -> None:
    with pytest.raises(RuntimeError, match="set one of minAvailable and maxUnavailable"):
        offline_helm.template(RELEASE, NAMESPACE, {"jobs": {"podDisruptionBudget": budget}})


@pytest.mark.parametrize("value", ["1.5", "-1", '"all"', '"5"'])
def test_the_schema_refuses_a_budget_that_is_no_count(offline_helm: Helm, value: str) -> None:
    with pytest.raises(RuntimeError, match="maxUnavailable"):
        offline_helm(
            "template",
            RELEASE,
            str(CHART),
            "--set-json",
            f"jobs.podDisruptionBudget.maxUnavailable={value}",
        )


# --- The gateway's HorizontalPodAutoscaler -------------------------------------------------


def test_by_default_the_gateway_has_no_autoscaler_and_keeps_its_replicas(
    offline_helm: Helm, rendered: list[dict[str, Any]]
) -> None:
    # Opt-in: a Deployment without replicas drops to one pod on the `helm upgrade` from a
    # release that set them, until an autoscaler's first sync.
    assert not _kinds(rendered, "HorizontalPodAutoscaler")
    assert _deployment(rendered, "gateway")["spec"]["replicas"] == 2
    objects = offline_helm.template(RELEASE, NAMESPACE, {"gateway": {"replicas": 3}})
    assert not _kinds(objects, "HorizontalPodAutoscaler")
    assert _deployment(objects, "gateway")["spec"]["replicas"] == 3


def test_the_autoscaler_turned_on_scales_on_cpu_and_the_deployment_leaves_replicas_to_it(
    offline_helm: Helm,
) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, AUTOSCALING)
    (hpa,) = _kinds(objects, "HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == f"{RELEASE}-gateway"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{RELEASE}-gateway",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    ]
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    gateway = _deployment(objects, "gateway")
    assert "replicas" not in gateway["spec"]
    # A utilisation target is a share of the request: the gateway has one.
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"]
    for component in ("contract", "download", "jobs", "operator"):
        assert "replicas" in _deployment(objects, component)["spec"]


def test_a_memory_target_adds_a_metric(offline_helm: Helm) -> None:
    objects = offline_helm.template(
        RELEASE,
        NAMESPACE,
        {"gateway": {"autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80}}},
    )
    (hpa,) = _kinds(objects, "HorizontalPodAutoscaler").values()
    assert [
        (metric["resource"]["name"], metric["resource"]["target"]["averageUtilization"])
        for metric in hpa["spec"]["metrics"]
    ] == [("cpu", 70), ("memory", 80)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--set", "gateway.autoscaling.minReplicas=4,gateway.autoscaling.maxReplicas=3"),
            "maxReplicas is less than minReplicas",
        ),
        (
            ("--set", "gateway.resources.requests.cpu=null"),
            "targetCPUUtilizationPercentage needs gateway.resources.requests.cpu",
        ),
        # No resources at all: the same refusal, not a template error on a nil map.
        (
            ("--set", "gateway.resources=null"),
            "targetCPUUtilizationPercentage needs gateway.resources.requests.cpu",
        ),
        (
            (
                "--set",
                "gateway.resources.requests.memory=null",
                "--set",
                "gateway.autoscaling.targetMemoryUtilizationPercentage=80",
            ),
            "targetMemoryUtilizationPercentage needs gateway.resources.requests.memory",
        ),
        (
            ("--set", "gateway.autoscaling.targetCPUUtilizationPercentage=null"),
            "set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage",
        ),
        (("--set", "gateway.autoscaling.minReplicas=0"), "minReplicas"),
    ],
)
def test_an_autoscaler_that_cannot_work_is_refused(
    offline_helm: Helm, args: tuple[str, ...], message: str
) -> None:
    on = ("--set", "gateway.autoscaling.enabled=true")
    with pytest.raises(RuntimeError, match=re.escape(message)):
        offline_helm("template", RELEASE, str(CHART), *on, *args)


# --- Topology spread -----------------------------------------------------------------------


def _spread(objects: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    spec = _deployment(objects, component)["spec"]["template"]["spec"]
    constraints: list[dict[str, Any]] = spec.get("topologySpreadConstraints", [])
    return constraints


def test_services_of_more_than_one_pod_spread_over_zones_and_nodes(
    rendered: list[dict[str, Any]],
) -> None:
    for component in ("gateway", "contract", "jobs"):
        constraints = _spread(rendered, component)
        assert [c["topologyKey"] for c in constraints] == [
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        ]
        for constraint in constraints:
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
            assert constraint["maxSkew"] == 1
            assert constraint["matchLabelKeys"] == ["pod-template-hash"]
            for other in (*SERVICES, "operator"):
                labels = _pod_labels(rendered, other)
                assert _selects(constraint["labelSelector"], labels) is (other == component)
    # One pod has nothing to spread.
    assert _spread(rendered, "download") == []
    assert _spread(rendered, "operator") == []


def test_spread_follows_the_replicas_and_the_switch(offline_helm: Helm) -> None:
    objects = offline_helm.template(
        RELEASE,
        NAMESPACE,
        {
            "download": {"replicas": 2},
            "contract": {"replicas": 1},
            "gateway": {"replicas": 1},
        },
    )
    assert len(_spread(objects, "download")) == 2
    assert _spread(objects, "contract") == []
    assert _spread(objects, "gateway") == []
    # Its autoscaler may run more than one pod (up to maxReplicas), whatever the replicas.
    scaled = offline_helm.template(
        RELEASE, NAMESPACE, {"gateway": {"autoscaling": {"enabled": True}, "replicas": 1}}
    )
    assert len(_spread(scaled, "gateway")) == 2
    off = offline_helm.template(
        RELEASE,
        NAMESPACE,
        {"topologySpread": {"enabled": False, "whenUnsatisfiable": "DoNotSchedule"}},
    )
    assert all(_spread(off, component) == [] for component in SERVICES)
    strict = offline_helm.template(
        RELEASE, NAMESPACE, {"topologySpread": {"whenUnsatisfiable": "DoNotSchedule"}}
    )
    assert {c["whenUnsatisfiable"] for c in _spread(strict, "gateway")} == {"DoNotSchedule"}


def test_a_component_s_own_constraints_replace_the_chart_s(offline_helm: Helm) -> None:
    own = {"maxSkew": 2, "topologyKey": "example.com/rack", "whenUnsatisfiable": "DoNotSchedule"}
    given = {**own, "topologyKey": "example.com/row", "labelSelector": {"matchLabels": {"a": "b"}}}
    objects = offline_helm.template(
        RELEASE, NAMESPACE, {"jobs": {"replicas": 1, "topologySpreadConstraints": [own, given]}}
    )
    first, second = _spread(objects, "jobs")
    selector = _deployment(objects, "jobs")["spec"]["selector"]
    assert first == {**own, "labelSelector": {"matchLabels": selector["matchLabels"]}}
    assert second == given
    assert len(_spread(objects, "contract")) == 2


# --- Resources -----------------------------------------------------------------------------


def _quantity(text: str) -> float:
    """A Kubernetes quantity of the forms the chart uses (m, Mi, Gi) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_every_service_requests_cpu_and_memory_under_a_memory_limit(
    rendered: list[dict[str, Any]],
) -> None:
    for component in (*SERVICES, "operator"):
        (container,) = _deployment(rendered, component)["spec"]["template"]["spec"]["containers"]
        resources = container["resources"]
        requests, limits = resources["requests"], resources["limits"]
        assert _quantity(requests["cpu"]) > 0, component
        assert 0 < _quantity(requests["memory"]) <= _quantity(limits["memory"]), component


# --- The real API server -------------------------------------------------------------------


@pytest.mark.kube
def test_the_api_server_accepts_the_production_objects_with_other_values(
    cluster_helm: Helm, crds: KubeCluster, namespace: str
) -> None:
    values = {
        "serverNamespaces": [],
        "gateway": {
            "autoscaling": {
                "enabled": True,
                "targetMemoryUtilizationPercentage": 80,
                "maxReplicas": 10,
            },
            "podDisruptionBudget": {"minAvailable": "50%", "maxUnavailable": None},
        },
        "contract": {"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": None}},
        "download": {"replicas": 2},
        "jobs": {
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "DoNotSchedule",
                }
            ]
        },
    }
    manifest = cluster_helm(
        "template",
        f"modelserve-{namespace}",
        str(CHART),
        "--namespace",
        namespace,
        "-f",
        str(cluster_helm.values_file(values, f"production-{namespace}")),
    )
    out = crds.kubectl("apply", "--dry-run=server", stdin=manifest)
    created = {line.split()[0] for line in out.splitlines() if line.endswith("(server dry run)")}
    prefix = f"modelserve-{namespace}"
    for component in SERVICES:
        assert f"poddisruptionbudget.policy/{prefix}-{component}" in created
    assert f"horizontalpodautoscaler.autoscaling/{prefix}-gateway" in created


@pytest.mark.kube
def test_the_notes_say_which_budget_was_left_out_and_why(
    cluster_helm: Helm, namespace: str
) -> None:
    out = cluster_helm(
        "install",
        f"modelserve-{namespace}",
        str(CHART),
        "--namespace",
        namespace,
        "--dry-run=client",
        "--set-json",
        "serverNamespaces=[]",
        "--set-json",
        'contract.podDisruptionBudget={"minAvailable": 2, "maxUnavailable": null}',
        "--set",
        "jobs.podDisruptionBudget.maxUnavailable=0",
    )
    notes = out[out.index("NOTES:") :]
    contract = "WARNING: contract.podDisruptionBudget.minAvailable 2 of 2 pods allows no disruption"
    assert contract in notes
    assert "WARNING: jobs.podDisruptionBudget.maxUnavailable 0 allows no disruption" in notes
    assert "gateway.podDisruptionBudget" not in notes
    manifest = out[: out.index("NOTES:")]
    assert manifest.count("kind: PodDisruptionBudget") == 2  # the gateway's, the download's
