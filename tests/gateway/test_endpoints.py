"""EndpointSlices as the gateway reads them, and the table of endpoints it keeps (pure).

(The same slices on the real API server, watched: test_discovery.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from modelserve.gateway.balancing import Endpoint
from modelserve.gateway.endpoints import (
    SLICE_SELECTOR,
    EndpointTable,
    ServiceSlice,
    merged,
    slice_from_body,
)


def endpoint(address: str, **conditions: bool | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "addresses": [address],
        "conditions": {k: v for k, v in conditions.items() if v is not None},
        "targetRef": {"kind": "Pod", "name": f"qwen-{address.rsplit('.', 1)[-1]}"},
    }
    return found


def slice_body(
    endpoints: list[dict[str, Any]],
    *,
    name: str = "qwen-x7k2p",
    service: str | None = "qwen",
    address_type: str = "IPv4",
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An EndpointSlice as the controller makes it for the operator's Service `qwen`."""
    labels = {
        "app.kubernetes.io/managed-by": "modelserve-operator",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
    }
    if service is not None:
        labels["kubernetes.io/service-name"] = service
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "team-a", "labels": labels},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}] if ports is None else ports,
    }


def test_a_slice_becomes_the_endpoints_of_its_service() -> None:
    found = slice_from_body(
        slice_body(
            [
                endpoint("10.244.1.5", ready=True, serving=True, terminating=False),
                endpoint("10.244.2.7", ready=False, serving=False, terminating=False),
            ]
        )
    )
    assert (found.namespace, found.name, found.service) == ("team-a", "qwen-x7k2p", "qwen")
    assert found.endpoints == (
        Endpoint("http://10.244.1.5:8000/v1", ready=True, pod="qwen-5"),
        Endpoint("http://10.244.2.7:8000/v1", ready=False, pod="qwen-7"),
    )


@pytest.mark.parametrize(
    ("conditions", "ready"),
    [
        ({"ready": True}, True),
        ({"ready": False}, False),
        # Terminating pods get no new requests, even where a slice calls them ready
        # (a Service with publishNotReadyAddresses).
        ({"ready": True, "terminating": True}, False),
        ({"ready": False, "serving": True, "terminating": True}, False),
        # The API: "a nil value should be interpreted as true".
        ({}, True),
    ],
)
def test_readiness_comes_from_the_conditions(conditions: dict[str, bool], ready: bool) -> None:
    (found,) = slice_from_body(slice_body([endpoint("10.244.1.5", **conditions)])).endpoints
    assert found.ready is ready


def test_only_the_http_port_of_an_ip_slice_counts() -> None:
    other_port = [{"name": "metrics", "port": 9090}]
    assert slice_from_body(slice_body([endpoint("10.0.0.1")], ports=other_port)).endpoints == ()
    unnamed = [{"port": 8000}]
    assert slice_from_body(slice_body([endpoint("10.0.0.1")], ports=unnamed)).endpoints == ()
    both = [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}]
    (found,) = slice_from_body(slice_body([endpoint("10.0.0.1")], ports=both)).endpoints
    assert found.url == "http://10.0.0.1:8080/v1"
    fqdn = slice_body([endpoint("qwen.example.com")], address_type="FQDN")
    assert slice_from_body(fqdn).endpoints == ()


def test_ipv6_addresses_are_bracketed() -> None:
    v6 = slice_body([endpoint("fd00::5", ready=True)], address_type="IPv6")
    (found,) = slice_from_body(v6).endpoints
    assert found.url == "http://[fd00::5]:8000/v1"


def test_a_slice_without_endpoints_or_addresses_has_none() -> None:
    empty = slice_body([])
    empty["endpoints"] = None  # what the API server sends for a Service with no pods
    assert slice_from_body(empty).endpoints == ()
    assert slice_from_body(slice_body([{"addresses": []}])).endpoints == ()


def test_the_selector_asks_for_the_operator_s_services_with_a_service_name() -> None:
    assert (
        SLICE_SELECTOR
        == "app.kubernetes.io/managed-by=modelserve-operator,kubernetes.io/service-name"
    )


def service_slice(name: str, *endpoints: Endpoint, service: str = "qwen") -> ServiceSlice:
    return ServiceSlice("team-a", name, service, endpoints)


ONE = Endpoint("http://10.0.0.1:8000/v1")
TWO = Endpoint("http://10.0.0.2:8000/v1")


def test_an_endpoint_in_two_slices_counts_once_and_ready_wins() -> None:
    not_ready = Endpoint(ONE.url, ready=False)
    assert merged([service_slice("a", not_ready, TWO), service_slice("b", ONE)]) == (ONE, TWO)


def test_the_table_follows_slices_as_they_come_change_and_go() -> None:
    table = EndpointTable()
    table.upsert(service_slice("qwen-a", ONE))
    table.upsert(service_slice("qwen-b", TWO))
    table.upsert(service_slice("llama-a", Endpoint("http://10.0.0.9:8000/v1"), service="llama"))
    assert table.of("team-a", "qwen") == (ONE, TWO)
    assert table.of("team-b", "qwen") == ()

    table.upsert(service_slice("qwen-a", Endpoint(ONE.url, ready=False)))
    assert table.of("team-a", "qwen") == (Endpoint(ONE.url, ready=False), TWO)
    table.remove("team-a", "qwen-b")
    table.remove("team-a", "qwen-missing")
    assert table.of("team-a", "qwen") == (Endpoint(ONE.url, ready=False),)

    # A list replaces the namespace's slices, and keeps others'.
    other = ServiceSlice("team-b", "qwen-c", "qwen", (TWO,))
    table.upsert(other)
    table.replace([service_slice("qwen-d", ONE)], namespace="team-a")
    assert table.of("team-a", "qwen") == (ONE,)
    assert table.of("team-a", "llama") == ()
    assert table.of("team-b", "qwen") == (TWO,)
    table.replace([])
    assert table.of("team-b", "qwen") == ()


def test_in_flight_counts_steer_the_choice_and_outlive_the_slice() -> None:
    table = EndpointTable()
    table.upsert(service_slice("qwen-a", ONE, TWO))
    endpoints = table.of("team-a", "qwen")
    table.acquire(ONE)
    assert {table.choose(endpoints) for _ in range(4)} == {TWO}
    assert table.choose(endpoints, exclude=[TWO.url]) == ONE
    # The slice goes away while a request is in flight: its count stays until released.
    table.remove("team-a", "qwen-a")
    assert table.load([ONE]) == 1
    table.release(ONE)
    assert table.load([ONE, TWO]) == 0
