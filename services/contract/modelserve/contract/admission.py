"""The ModelServe admission webhook: AdmissionReview in, a decision's answer out (pure).

Who is asking. The API server names the Kubernetes user that sent the request:
- one of the delegating users (the gateway's service account) acts for the platform user
  in the ModelServe's `llm.modelserve.io/owner` label, of the team in
  `llm.modelserve.io/team`: the gateway sets both from the bearer token it checked (a
  Scale object has no labels: a scale acts for the server's owner in the ledger);
- anyone else is the platform user of the same name; their Kubernetes groups named
  `<team prefix><team>` are their teams, and the admin groups make them admins.

What is asked. CREATE and UPDATE of a ModelServe are a `serve`, an update of its `scale`
subresource a `scale`, DELETE a `stop`, which is always allowed: a deletion only takes the
server out of the ledger.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from pydantic import ValidationError

from modelserve.common.modelserve import (
    GROUP,
    OWNER_LABEL,
    PLURAL,
    TEAM_LABEL,
    VERSION,
    ModelServe,
)
from modelserve.common.settings import split
from modelserve.contract.policy import Action, Decision, Principal, Resource, with_recorded
from modelserve.contract.settings import ContractSettings
from modelserve.contract.tables import Server

ADMIN_ROLE = "admin"
WEBHOOK = f"{PLURAL}.contract.modelserve.io"
DELETION_WEBHOOK = f"{PLURAL}-deletions.contract.modelserve.io"
PATH = "/admission/modelserves"


@dataclasses.dataclass(frozen=True)
class Review:
    """What the webhook needs of an AdmissionReview's request."""

    uid: str
    operation: str  # CREATE, UPDATE, DELETE
    sub_resource: str
    user: str
    groups: tuple[str, ...]
    namespace: str
    name: str
    object: dict[str, Any]
    old_object: dict[str, Any]
    dry_run: bool

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Review:
        request = body["request"]
        user = request.get("userInfo") or {}
        return cls(
            uid=request["uid"],
            operation=request["operation"],
            sub_resource=request.get("subResource") or "",
            user=user.get("username", ""),
            groups=tuple(user.get("groups") or ()),
            namespace=request.get("namespace") or "",
            name=request.get("name") or "",
            object=request.get("object") or {},
            old_object=request.get("oldObject") or {},
            dry_run=bool(request.get("dryRun")),
        )

    @property
    def action(self) -> Action:
        if self.operation == "DELETE":
            return Action.STOP
        return Action.SCALE if self.sub_resource == "scale" else Action.SERVE


class Refused(ValueError):
    """The request cannot be decided on as sent (the message says why)."""


def delegated(review: Review, settings: ContractSettings) -> bool:
    """Whether the Kubernetes user acts for someone else (the gateway)."""
    return review.user in split(settings.delegating_users)


def principal(
    review: Review, settings: ContractSettings, recorded: Server | None = None
) -> Principal:
    """The platform principal behind the Kubernetes user (see the module's docstring);
    `recorded`: the ledger's row of the server, which a delegated scale acts for."""
    if delegated(review, settings):
        if review.action is Action.SCALE:
            if recorded is None or not recorded.owner:
                raise Refused(
                    f"{review.user} acts for a user: no owner of {review.namespace}/"
                    f"{review.name} is recorded yet"
                )
            return Principal(subject=recorded.owner, teams=[recorded.team] if recorded.team else [])
        source = review.object or review.old_object
        labels = (source.get("metadata") or {}).get("labels") or {}
        owner = labels.get(OWNER_LABEL)
        if not owner:
            raise Refused(f"{review.user} acts for a user: the label {OWNER_LABEL} must name them")
        team = labels.get(TEAM_LABEL)
        return Principal(subject=owner, teams=[team] if team else [])
    prefix = settings.team_group_prefix
    admins = set(split(settings.admin_groups))
    return Principal(
        subject=review.user,
        teams=[group.removeprefix(prefix) for group in review.groups if group.startswith(prefix)],
        roles=[ADMIN_ROLE] if admins & set(review.groups) else [],
    )


def resource(review: Review, recorded: Server | None = None) -> Resource:
    """The server as the request would leave it; for a scale, the rest of it as `recorded`."""
    if review.action is Action.SCALE:
        replicas = int((review.object.get("spec") or {}).get("replicas") or 0)
        scaled = Resource(namespace=review.namespace, name=review.name, replicas=replicas)
        return with_recorded(scaled, recorded)
    if review.action is Action.STOP:
        return Resource(namespace=review.namespace, name=review.name)
    try:
        ms = ModelServe.from_body(review.object)
    except ValidationError as error:
        raise Refused(f"not a valid ModelServe: {error}") from error
    labels = (review.object.get("metadata") or {}).get("labels") or {}
    return Resource(
        namespace=review.namespace,
        name=review.name,
        model=ms.served_name,
        runtime=ms.spec.runtime.value,
        replicas=ms.spec.replicas,
        gpus=ms.spec.resources.gpus,
        team=labels.get(TEAM_LABEL),
    )


def response(uid: str, allowed: bool, message: str = "") -> dict[str, Any]:
    answer: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}


def decision_response(uid: str, decision: Decision) -> dict[str, Any]:
    # kubectl prints the message after "admission webhook … denied the request: ".
    return response(uid, decision.allowed, f"[{decision.reason}] {decision.message}")


def build_webhook_configuration(
    *,
    ca_bundle: bytes,
    url: str | None = None,
    service: tuple[str, str, int] | None = None,
    namespace_selector: dict[str, Any] | None = None,
    name: str = "modelserve-contract",
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration that sends ModelServe writes to this service.

    Reached by `url` (outside the cluster, as in the test bed) or `service`
    (namespace, name, port). Creates and updates fail closed: with the service down, no
    ModelServe is created or grown unchecked. Deletions fail open: an outage must never
    keep anyone from stopping a server; the ledger catches up when the service lists the
    cluster's ModelServes again.
    """
    if (url is None) == (service is None):
        raise ValueError("give the webhook a url or a service, not both")
    client: dict[str, Any] = {"caBundle": base64.b64encode(ca_bundle).decode()}
    if url is not None:
        client["url"] = url.rstrip("/") + PATH
    else:
        assert service is not None
        namespace, service_name, port = service
        client["service"] = {
            "namespace": namespace,
            "name": service_name,
            "port": port,
            "path": PATH,
        }

    def webhook(
        hook: str, operations: list[str], resources: list[str], failure: str
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": hook,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "NoneOnDryRun",
            "timeoutSeconds": 5,
            "failurePolicy": failure,
            "matchPolicy": "Equivalent",
            "clientConfig": client,
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "apiVersions": [VERSION],
                    "operations": operations,
                    "resources": resources,
                    "scope": "Namespaced",
                }
            ],
        }
        if namespace_selector is not None:
            entry["namespaceSelector"] = namespace_selector
        return entry

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            webhook(WEBHOOK, ["CREATE", "UPDATE"], [PLURAL, f"{PLURAL}/scale"], "Fail"),
            webhook(DELETION_WEBHOOK, ["DELETE"], [PLURAL], "Ignore"),
        ],
    }
