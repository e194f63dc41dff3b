"""GET /logs/{component} and GET /version, the pure parts: which components exist, which
containers have a log, how the answer reads as text, which images the servers run; and
that the labels they read are those the chart and the operator write."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from modelserve.common.errors import ApiError
from modelserve.gateway.operations import facts, logs
from modelserve.gateway.operations.platform_pods import platform_pods
from modelserve.operator import builders

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelserve" / "templates"
SERVER_ID = "0b9d7f5e-7c55-4a55-9d47-5d1f3f0e9c11"


def test_the_platform_components_are_those_whose_pods_the_chart_labels() -> None:
    # Pod templates carry the selector labels (componentLabels are on other objects too).
    found = set()
    for template in CHART.glob("*.yaml"):
        found |= set(
            re.findall(
                r'selectorLabels" \(list \. "([a-z-]+)"\) \| nindent 8', template.read_text()
            )
        )
    # A new component's pods need their name in PLATFORM_COMPONENTS to have their logs read.
    assert found == set(logs.PLATFORM_COMPONENTS)


def test_the_labels_are_those_the_operator_writes() -> None:
    assert logs.SERVER_POD_LABEL == builders.NAME_LABEL
    assert facts.MANAGED_BY_LABEL == builders.MANAGED_BY
    assert facts.OPERATOR == builders.OPERATOR
    assert facts.RUNTIME_LABEL == builders.RUNTIME_LABEL


@pytest.mark.parametrize(
    ("component", "is_id"),
    [(SERVER_ID, True), (SERVER_ID.upper(), False), ("gateway", False), ("1234", False)],
)
def test_server_ids_are_uuids_as_status_writes_them(component: str, is_id: bool) -> None:
    assert logs.is_server_id(component) is is_id


def test_an_unknown_component_lists_the_valid_ones() -> None:
    error = logs.unknown_component("api_server")
    assert error.status_code == 404
    assert error.code == "unknown_component"
    assert all(name in str(error.detail) for name in logs.PLATFORM_COMPONENTS)
    assert "server_id" in str(error.detail)


def test_a_server_has_two_containers_to_read() -> None:
    assert logs.check_container(None, server=True) == "server"
    assert logs.check_container("fetch-model", server=True) == "fetch-model"
    with pytest.raises(ApiError) as refused:
        logs.check_container("sidecar", server=True)
    assert refused.value.status_code == 422
    assert "server, fetch-model" in str(refused.value.detail)
    assert logs.check_container(None, server=False) is None


def pod(name: str, created: str, **states: dict[str, Any]) -> dict[str, Any]:
    statuses = [{"name": c, "state": state, "restartCount": 0} for c, state in states.items()]
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "spec": {
            "initContainers": [{"name": "fetch-model"}],
            "containers": [{"name": "server"}],
        },
        "status": {"initContainerStatuses": statuses[:1], "containerStatuses": statuses[1:]},
    }


def test_only_containers_that_ran_have_a_log() -> None:
    running = pod(
        "b",
        "2026-01-02T00:00:00Z",
        **{"fetch-model": {"terminated": {}}, "server": {"running": {}}},
    )
    waiting = pod(
        "a", "2026-01-01T00:00:00Z", **{"fetch-model": {"running": {}}, "server": {"waiting": {}}}
    )
    assert logs.log_targets([running, waiting], "server") == [("ns", "b", "server")]
    assert logs.log_targets([running, waiting], None) == [
        ("ns", "a", "fetch-model"),
        ("ns", "b", "fetch-model"),
        ("ns", "b", "server"),
    ]
    restarted = pod(
        "c",
        "2026-01-03T00:00:00Z",
        **{"fetch-model": {"terminated": {}}, "server": {"waiting": {}}},
    )
    restarted["status"]["containerStatuses"][0]["restartCount"] = 2
    assert logs.log_targets([restarted], "server") == [("ns", "c", "server")]


def test_no_running_pod_says_where_it_looked() -> None:
    error = logs.no_running_pod("gateway", None, ["modelserve"], platform=True)
    assert error.status_code == 404
    assert "modelserve" in str(error.detail)
    assert "processes" in str(error.detail)
    server = logs.no_running_pod(SERVER_ID, "server", ["team-a"], platform=False)
    assert "processes" not in str(server.detail)


def test_the_text_answer_reads_like_tail() -> None:
    answer = logs.log_answer(
        SERVER_ID,
        "server",
        lines=2,
        since_seconds=None,
        read=[(("ns", "a", "server"), "one\ntwo\n"), (("ns", "b", "server"), "")],
    )
    assert answer["pods"][0] == {
        "namespace": "ns",
        "pod": "a",
        "container": "server",
        "lines": ["one", "two"],
    }
    assert logs.as_text(answer) == "==> ns/a/server <==\none\ntwo\n\n==> ns/b/server <==\n"


@pytest.mark.parametrize(
    ("accept", "text"),
    [
        (None, False),
        ("*/*", False),
        ("text/plain", True),
        ("text/plain;q=0.9, application/json", True),
        ("application/json, text/plain", False),
    ],
)
def test_text_is_answered_only_when_asked_for(accept: str | None, text: bool) -> None:
    assert logs.wants_text(accept) is text


def deployment(image: str, runtime: str, managed: bool = True) -> dict[str, Any]:
    labels = {facts.RUNTIME_LABEL: runtime}
    if managed:
        labels[facts.MANAGED_BY_LABEL] = facts.OPERATOR
    containers = [{"name": "server", "image": image}, {"name": "exporter", "image": "other"}]
    return {
        "metadata": {"name": "x", "labels": labels},
        "spec": {"template": {"spec": {"containers": containers}}},
    }


def test_runtime_images_are_those_the_operator_deployments_run() -> None:
    found = facts.runtime_images(
        [
            deployment("llama:b1", "llamacpp"),
            deployment("llama:b1", "llamacpp"),
            deployment("vllm:0.9", "vllm"),
            deployment("someone-elses", "vllm", managed=False),
        ]
    )
    assert found == [
        {"image": "llama:b1", "runtime": "llamacpp", "deployments": 2},
        {"image": "vllm:0.9", "runtime": "vllm", "deployments": 1},
    ]


def test_version_says_why_a_field_is_unavailable() -> None:
    found = facts.build_version(
        kubernetes_version=None, images=None, unavailable={"kubernetes_version": "no cluster"}
    )
    assert found["kubernetes_version"] == "unavailable"
    assert found["runtime_images"] == "unavailable"
    assert found["unavailable"] == {"kubernetes_version": "no cluster"}
    assert found["api_version"] == facts.API_VERSION


def test_platform_pods_are_summed_per_pod() -> None:
    (found,) = platform_pods(
        [
            {
                "metadata": {
                    "name": "gw-1",
                    "namespace": "modelserve",
                    "labels": {logs.COMPONENT_LABEL: "gateway"},
                },
                "spec": {"nodeName": "n"},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"restartCount": 2}, {"restartCount": 1}],
                },
            }
        ]
    )
    assert found["component"] == "gateway"
    assert found["ready"] is True
    assert found["restarts"] == 3
