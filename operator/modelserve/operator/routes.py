"""The per-server route as a Gateway API HTTPRoute (OPERATOR_ROUTE_KIND=httproute).

Pure, like builders: the same `/{server-id}/` → gateway route as Traefik's IngressRoute
(builders.build_route), for clusters whose ingress is a Gateway API implementation.
"""

from __future__ import annotations

from typing import Any

from modelserve.operator.settings import OperatorSettings

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
HTTPROUTE_API_VERSION = f"{GATEWAY_API_GROUP}/v1"
HTTPROUTE_KIND = "HTTPRoute"

Obj = dict[str, Any]


def parent_ref(settings: OperatorSettings) -> Obj:
    """The Gateway (and, if one is named, its listener) that every HTTPRoute attaches to.
    No namespace: the route's own, as Gateway API defaults it."""
    ref: Obj = {"group": GATEWAY_API_GROUP, "kind": "Gateway", "name": settings.route_gateway_name}
    if settings.route_gateway_namespace:
        ref["namespace"] = settings.route_gateway_namespace
    if settings.route_gateway_section_name:
        ref["sectionName"] = settings.route_gateway_section_name
    return ref


def backend_ref(settings: OperatorSettings) -> Obj:
    """The gateway's Kubernetes Service. The settings refuse a Traefik service
    (`name@provider`) with HTTPRoutes: Gateway API has nothing that names one."""
    return {
        "group": "",
        "kind": "Service",
        "name": settings.route_service,
        "namespace": settings.route_service_namespace,
        "port": settings.route_service_port,
    }


def build_httproute(metadata: Obj, prefix: str, settings: OperatorSettings) -> Obj:
    """`{prefix}/` → the gateway, path kept (no filter rewrites it): the gateway serves
    `/{server-id}/v1/...` itself, with the same policy and accounting as `/v1`.

    `metadata` is the ModelServe's child metadata (name, labels, owner reference) and
    `prefix` its route prefix (`/{server-id}`). A PathPrefix matches whole path segments,
    so `/{server-id}/` never matches another server whose id merely starts the same.
    """
    spec: Obj = {"parentRefs": [parent_ref(settings)]}
    if settings.route_host:
        spec["hostnames"] = [settings.route_host]
    spec["rules"] = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": f"{prefix}/"}}],
            "backendRefs": [backend_ref(settings)],
        }
    ]
    return {
        "apiVersion": HTTPROUTE_API_VERSION,
        "kind": HTTPROUTE_KIND,
        "metadata": metadata,
        "spec": spec,
    }
