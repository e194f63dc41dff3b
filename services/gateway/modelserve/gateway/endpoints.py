"""The endpoints of the model servers' Services, as their EndpointSlices list them.

A `vllm` or `llamacpp` ModelServe has a Service of the same name in its namespace (the
operator's `build_service`), whose port `http` leads to the server. The EndpointSlice
controller lists the Service's pods in EndpointSlices labelled
`kubernetes.io/service-name=<Service>`, and copies the Service's own labels onto them
(`app.kubernetes.io/managed-by=modelserve-operator` among them), so discovery watches
only the slices of the operator's Services (`SLICE_SELECTOR`).

Parsing is pure; `EndpointTable` is plain data that one event loop reads and writes:
the endpoints of each Service, and the requests in flight on each endpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from modelserve.gateway.balancing import Endpoint, choose_endpoint

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
OPERATOR = "modelserve-operator"
# Slices of the operator's Services only: every slice carries its Service's name.
SLICE_SELECTOR = f"{MANAGED_BY_LABEL}={OPERATOR},{SERVICE_NAME_LABEL}"
# The Service port that leads to the model server (the operator names it so).
PORT_NAME = "http"
# The model servers speak plain HTTP inside the cluster, OpenAI's API under /v1.
_IP_TYPES = frozenset({"IPv4", "IPv6"})


@dataclasses.dataclass(frozen=True)
class ServiceSlice:
    """One EndpointSlice: which Service it belongs to, and the endpoints it lists."""

    namespace: str
    name: str  # the slice's own name
    service: str
    endpoints: tuple[Endpoint, ...]


def slice_from_body(body: Mapping[str, Any]) -> ServiceSlice:
    """An EndpointSlice as the API server returns it (discovery.k8s.io/v1, as JSON).

    Only addresses of IP slices with a port named `http` become endpoints; an endpoint is
    ready when `conditions.ready` is not false (the API says nil means ready) and it is
    not terminating. Raises KeyError for an object without namespace or name."""
    meta = body["metadata"]
    labels = meta.get("labels") or {}
    port = _http_port(body.get("ports"))
    endpoints: list[Endpoint] = []
    if port is not None and body.get("addressType") in _IP_TYPES:
        for found in body.get("endpoints") or ():
            endpoint = _endpoint(found, port)
            if endpoint is not None:
                endpoints.append(endpoint)
    return ServiceSlice(
        namespace=meta["namespace"],
        name=meta["name"],
        service=str(labels.get(SERVICE_NAME_LABEL) or ""),
        endpoints=tuple(endpoints),
    )


def _http_port(ports: object) -> int | None:
    for port in ports if isinstance(ports, list) else ():
        if isinstance(port, dict) and port.get("name") == PORT_NAME:
            number = port.get("port")
            return number if isinstance(number, int) else None
    return None


def _endpoint(found: Mapping[str, Any], port: int) -> Endpoint | None:
    addresses = found.get("addresses") or ()
    if not addresses:
        return None
    # Every address of an endpoint reaches the same pod; kube-proxy uses the first too.
    address = str(addresses[0])
    host = f"[{address}]" if ":" in address else address
    conditions = found.get("conditions") or {}
    ready = conditions.get("ready") is not False and conditions.get("terminating") is not True
    target = found.get("targetRef") or {}
    return Endpoint(url=f"http://{host}:{port}/v1", ready=ready, pod=str(target.get("name") or ""))


def merged(slices: Iterable[ServiceSlice]) -> tuple[Endpoint, ...]:
    """The endpoints of a Service's slices, each once (during a change the controller may
    list one in two slices: it is ready if either says so), in a stable order."""
    by_url: dict[str, Endpoint] = {}
    for found in slices:
        for endpoint in found.endpoints:
            known = by_url.get(endpoint.url)
            if known is None or (endpoint.ready and not known.ready):
                by_url[endpoint.url] = endpoint
    return tuple(by_url[url] for url in sorted(by_url))


class EndpointTable:
    """The endpoints of every watched Service, and the requests in flight per endpoint.

    In-flight counts are kept by URL apart from the slices: a request keeps its count
    (and its connection) when its endpoint stops being ready or its slice goes away.
    `on_change` is called after the endpoints of a Service changed (held requests wait
    for it)."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._on_change = on_change
        self._slices: dict[tuple[str, str], ServiceSlice] = {}  # (namespace, slice name)
        self._services: dict[tuple[str, str], tuple[Endpoint, ...]] = {}  # (ns, Service)
        self._in_flight: dict[str, int] = {}
        self._turn = 0

    # --- Kept current by discovery ---------------------------------------------------

    def upsert(self, found: ServiceSlice) -> None:
        key = (found.namespace, found.name)
        known = self._slices.get(key)
        if known == found:
            return
        self._slices[key] = found
        self._index({(found.namespace, found.service)} | _service_of(known))

    def remove(self, namespace: str, name: str) -> None:
        self._index(_service_of(self._slices.pop((namespace, name), None)))

    def replace(self, slices: Iterable[ServiceSlice], *, namespace: str | None = None) -> None:
        """All slices (of `namespace`, when given) are now exactly `slices`."""
        kept = {
            key: known
            for key, known in self._slices.items()
            if namespace is not None and known.namespace != namespace
        }
        self._slices = {**kept, **{(s.namespace, s.name): s for s in slices}}
        self._services = {}
        self._index({(s.namespace, s.service) for s in self._slices.values()})

    def _index(self, services: set[tuple[str, str]]) -> None:
        for key in services:
            found = merged(s for s in self._slices.values() if (s.namespace, s.service) == key)
            if found:
                self._services[key] = found
            else:
                self._services.pop(key, None)
        if self._on_change is not None:
            self._on_change()

    # --- Read by the dispatcher ------------------------------------------------------

    def of(self, namespace: str, service: str) -> tuple[Endpoint, ...]:
        return self._services.get((namespace, service), ())

    def choose(
        self, endpoints: Sequence[Endpoint], exclude: Collection[str] = ()
    ) -> Endpoint | None:
        """The balancing policy's choice among `endpoints`, with the counts kept here."""
        self._turn += 1
        return choose_endpoint(endpoints, self._in_flight, self._turn, exclude)

    def load(self, endpoints: Iterable[Endpoint]) -> int:
        """Requests in flight on `endpoints`, together."""
        return sum(self._in_flight.get(endpoint.url, 0) for endpoint in endpoints)

    def pods(self, endpoints: Iterable[Endpoint]) -> dict[str, int]:
        """Requests in flight on each pod of `endpoints` (by pod name), the non-zero ones."""
        found: dict[str, int] = {}
        for endpoint in endpoints:
            count = self._in_flight.get(endpoint.url, 0)
            if count and endpoint.pod:
                found[endpoint.pod] = found.get(endpoint.pod, 0) + count
        return found

    # --- Requests in flight, counted by the dispatcher -------------------------------

    def acquire(self, endpoint: Endpoint) -> None:
        self._in_flight[endpoint.url] = self._in_flight.get(endpoint.url, 0) + 1

    def release(self, endpoint: Endpoint) -> None:
        left = self._in_flight.get(endpoint.url, 0) - 1
        if left > 0:
            self._in_flight[endpoint.url] = left
        else:
            self._in_flight.pop(endpoint.url, None)


def _service_of(found: ServiceSlice | None) -> set[tuple[str, str]]:
    return set() if found is None else {(found.namespace, found.service)}
