"""The ModelServe admission webhooks: AdmissionReview in, an answer out (pure functions).

Who is asking. The API server names the Kubernetes user that sent the request:
- one of the delegating users (the gateway's service account) acts for the platform user
  in the ModelServe's `llm.modelserve.io/owner` label, of the team in
  `llm.modelserve.io/team`: the gateway sets both from the bearer token it checked (a
  Scale object has no labels: a scale acts for the server's owner);
- anyone else is the platform user of the same name; their Kubernetes groups named
  `<team prefix><team>` are their teams, and the admin groups make them admins.

What is asked. CREATE and UPDATE of a ModelServe are a `serve`, an update of its `scale`
subresource a `scale`, DELETE a `stop`. Every one of them but a create is for the server's
owner (its owner label) and platform admins only. The owner and team labels name the
requester: the mutating webhook stamps them on CREATE, the validating webhook refuses
labels that name someone else. Nothing here writes: the ledger follows the cluster.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any

from pydantic import ValidationError

from modelserve.common.modelserve import (
    GROUP,
    OWNER_LABEL,
    PLURAL,
    SERVER_LABEL,
    TEAM_LABEL,
    VERSION,
    ModelServe,
    Runtime,
    quantity_value,
)
from modelserve.common.owned_flags import (
    env_prefix_clash,
    expanded_args,
    owned_env,
    owned_flags,
)
from modelserve.common.rollouts import ROLLOUT_ANNOTATION
from modelserve.common.settings import split
from modelserve.contract.policy import Action, Decision, Principal, Resource, with_recorded
from modelserve.contract.settings import ContractSettings
from modelserve.contract.tables import Server

ADMIN_ROLE = "admin"
WEBHOOK = f"{PLURAL}.contract.modelserve.io"
DELETION_WEBHOOK = f"{PLURAL}-deletions.contract.modelserve.io"
MUTATING_WEBHOOK = f"{PLURAL}-owner.contract.modelserve.io"
PATH = "/admission/modelserves"
MUTATE_PATH = "/admission/modelserves/mutate"
# A label value (Kubernetes): at most 63 characters of this shape.
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


class Malformed(ValueError):
    """Not an AdmissionReview that can be answered (no request uid): a 400."""


class Refused(ValueError):
    """The request is refused; the message starts with its reason code in brackets."""


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or "\x00" in value:
        raise Refused(f"[invalid_review] {what} must be a string")
    return value


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refused(f"[invalid_review] {what} must be an object")
    return value


def uid_of(body: Any) -> str:
    """The request's uid, which every answer must carry; Malformed without one."""
    request = body.get("request") if isinstance(body, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    if not isinstance(uid, str) or not uid or "\x00" in uid:
        raise Malformed("not an AdmissionReview: request.uid is missing")
    return uid


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
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # a DELETE's options

    @classmethod
    def from_body(cls, body: Any) -> Review:
        """Malformed without a uid; Refused (answerable) for anything else amiss."""
        uid = uid_of(body)
        request = body["request"]
        user = _mapping(request.get("userInfo"), "request.userInfo")
        groups = user.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Refused("[invalid_review] request.userInfo.groups must be a list of strings")
        operation = _text(request.get("operation"), "request.operation")
        if operation not in ("CREATE", "UPDATE", "DELETE"):
            raise Refused(f"[invalid_review] operation {operation!r} is not decided here")
        obj = _mapping(request.get("object"), "request.object")
        old = _mapping(request.get("oldObject"), "request.oldObject")
        # A create with generateName names no object in the request; the validating webhook
        # sees the generated name in the object (the mutating one sees none yet). Each
        # deletion of a collection (a namespace's) names its object in the old one only.
        name = _text(request.get("name"), "request.name") or str(
            (obj.get("metadata") or {}).get("name") or (old.get("metadata") or {}).get("name") or ""
        )
        return cls(
            uid=uid,
            operation=operation,
            sub_resource=_text(request.get("subResource"), "request.subResource"),
            user=_text(user.get("username"), "request.userInfo.username"),
            groups=tuple(groups),
            namespace=_text(request.get("namespace"), "request.namespace"),
            name=name,
            object=obj,
            old_object=old,
            dry_run=bool(request.get("dryRun")),
            options=request.get("options") if isinstance(request.get("options"), dict) else {},
        )

    @property
    def action(self) -> Action:
        if self.operation == "DELETE":
            return Action.STOP
        return Action.SCALE if self.sub_resource == "scale" else Action.SERVE

    @property
    def changes_nothing_that_runs(self) -> bool:
        """An update of the object's metadata other than its labels (kopf's annotations and
        finalizers): it changes neither what runs nor whose it is."""
        return (
            self.operation == "UPDATE"
            and self.sub_resource == ""
            and bool(self.old_object)
            and spec_of(self.object) == spec_of(self.old_object)
            and labels_of(self.object) == labels_of(self.old_object)
        )


def spec_of(body: dict[str, Any]) -> Any:
    return body.get("spec") or {}


def labels_of(body: dict[str, Any]) -> dict[str, str]:
    labels = (body.get("metadata") or {}).get("labels") or {}
    return labels if isinstance(labels, dict) else {}


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


@dataclasses.dataclass(frozen=True)
class Requester:
    """The Kubernetes user behind the request, as the platform sees them."""

    user: str
    teams: tuple[str, ...]
    admin: bool
    delegating: bool
    system: bool = False  # one of Kubernetes' own controllers (CONTRACT_SYSTEM_CONTROLLERS)
    operator: bool = False  # the platform's operator (CONTRACT_OPERATOR_USERS)


def requester(review: Review, settings: ContractSettings) -> Requester:
    prefix = settings.team_group_prefix
    return Requester(
        user=review.user,
        teams=tuple(g.removeprefix(prefix) for g in review.groups if g.startswith(prefix)),
        admin=bool(set(split(settings.admin_groups)) & set(review.groups)),
        delegating=review.user in split(settings.delegating_users),
        system=review.user in split(settings.system_controllers),
        operator=review.user in split(settings.operator_users),
    )


def principal(who: Requester, review: Review, recorded: Server | None = None) -> Principal:
    """The platform principal the request is decided for: the requester, or (a delegating
    user) the owner in the labels, or for a scale the owner of the `recorded` server."""
    if not who.delegating:
        return Principal(
            subject=who.user, teams=list(who.teams), roles=[ADMIN_ROLE] if who.admin else []
        )
    if review.action is Action.SCALE:
        if recorded is None or not recorded.owner:
            raise Refused(
                f"[not_owner] {who.user} acts for a user: no owner of {review.namespace}/"
                f"{review.name} is known"
            )
        return Principal(subject=recorded.owner, teams=[recorded.team] if recorded.team else [])
    labels = labels_of(review.object or review.old_object)
    owner = labels.get(OWNER_LABEL)
    if not owner:
        raise Refused(
            f"[owner_label_missing] {who.user} acts for a user: the label {OWNER_LABEL} "
            "must name them"
        )
    team = labels.get(TEAM_LABEL)
    return Principal(subject=owner, teams=[team] if team else [])


def platform_refusal(review: Review, who: Requester, settings: ContractSettings) -> str | None:
    """Whether the request changes a ModelServe of a platform namespace, which only
    admins do: Kubernetes' controllers delete there too (a namespace deleted goes whole,
    garbage collection follows owners)."""
    if who.admin or review.namespace not in split(settings.platform_namespaces):
        return None
    if who.system and review.operation == "DELETE":
        return None
    return (
        f"[platform_namespace] {review.namespace} is a platform namespace: only platform "
        "admins serve, scale or stop servers there"
    )


def owner_refusal(review: Review, subject: str, owner: str | None) -> str | None:
    """Whether `subject` may change the server, whose owner is `owner`."""
    if owner == subject:
        return None
    whose = f"belongs to {owner}" if owner else "has no owner label"
    return (
        f"[not_owner] {review.namespace}/{review.name} {whose}: only its owner and platform "
        f"admins may change or delete it, not {subject}"
    )


def label_refusal(review: Review, who: Requester) -> str | None:
    """Whether the owner and team labels the request would leave name someone else."""
    if who.admin:
        return None
    new, old = labels_of(review.object), labels_of(review.old_object)
    owner = new.get(OWNER_LABEL)
    if who.delegating:
        if review.operation == "UPDATE" and owner != old.get(OWNER_LABEL):
            return (
                f"[owner_label_forged] the owner of {review.namespace}/{review.name} is "
                f"{old.get(OWNER_LABEL)!r}: {who.user} cannot change it"
            )
        return None
    if owner != who.user:
        return (
            f"[owner_label_forged] the label {OWNER_LABEL} must name you ({who.user}), "
            f"not {owner!r}"
        )
    team = new.get(TEAM_LABEL)
    if team and team not in who.teams:
        return (
            f"[team_label_forged] the label {TEAM_LABEL} names team {team!r}: "
            f"{who.user} is not a member"
        )
    return None


def rollout_annotation_refusal(review: Review, who: Requester) -> str | None:
    """Whether the request sets or changes a ModelServe's rollout id, which only the
    gateway (its POST /models/set_active, as a delegating user) and admins may: the
    operator reports a rollback of that rollout to the registry, which then moves the
    name's active version back. Set by anyone, it would let them roll back another
    tenant's version. Removing it, or leaving it as it is, is anyone's to do."""
    if who.admin or who.delegating or review.sub_resource:
        return None
    new = annotations_of(review.object).get(ROLLOUT_ANNOTATION)
    if new is None or new == annotations_of(review.old_object).get(ROLLOUT_ANNOTATION):
        return None
    return (
        f"[rollout_annotation_forged] the annotation {ROLLOUT_ANNOTATION} is set by the"
        f" gateway's POST /models/set_active only: {who.user} cannot set or change it"
    )


def metadata_refusal(review: Review, who: Requester) -> str | None:
    """Whether an update of metadata only (`changes_nothing_that_runs`) changes what only
    the server's owner, admins, the gateway and Kubernetes' controllers may: its owner
    references (the garbage collector deletes a server whose owner is gone: another's
    reference would let them delete it) and its annotations (the version it runs, kopf's
    record of what the operator last handled), which the operator may change too."""
    if who.admin or who.delegating or who.system:
        return None
    new, old = review.object.get("metadata") or {}, review.old_object.get("metadata") or {}
    fields = ("ownerReferences",) if who.operator else _GUARDED_METADATA
    changed = [field for field in fields if (new.get(field) or []) != (old.get(field) or [])]
    if not changed:
        return None
    owner = labels_of(review.old_object).get(OWNER_LABEL)
    refusal = owner_refusal(review, who.user, owner)
    return f"{refusal} (its {' and '.join(changed)})" if refusal else None


# Finalizers are `finalizer_refusal`'s (nobody's but admins', the owner's neither).
_GUARDED_METADATA = ("ownerReferences", "annotations")


def finalizer_refusal(review: Review, who: Requester) -> str | None:
    """Whether the request sets or changes finalizers, which only admins, the gateway and
    Kubernetes' controllers may: one the owner added would keep a deleted server's pods
    (and GPUs) running while the ledger no longer counts it."""
    if who.admin or who.delegating or who.system or review.operation == "DELETE":
        return None
    new = (review.object.get("metadata") or {}).get("finalizers") or []
    old = (review.old_object.get("metadata") or {}).get("finalizers") or []
    if new == old:
        return None
    return (
        f"[finalizer_not_allowed] only platform admins set the finalizers of "
        f"{review.namespace}/{review.name}: a finalizer keeps a deleted server running"
    )


def orphan_refusal(review: Review, who: Requester) -> str | None:
    """Whether a DELETE would leave the server's children behind (`propagationPolicy:
    Orphan`): its pods would keep their GPUs with no ModelServe to count them."""
    if who.admin or who.system or review.operation != "DELETE":
        return None
    orphan = review.options.get("propagationPolicy") == "Orphan" or (
        review.options.get("orphanDependents") is True
    )
    if not orphan:
        return None
    return (
        f"[orphan_not_allowed] {review.namespace}/{review.name} is deleted with its"
        " children (its pods would keep running, counted against no one): delete it"
        " without --cascade=orphan"
    )


def annotations_of(body: dict[str, Any]) -> dict[str, str]:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return annotations if isinstance(annotations, dict) else {}


def model_id_of(uri: str, prefix: str, field: str = "spec.model.uri") -> str:
    """The model record's id in a uri under `prefix` (`s3://bucket/models/<id>/…`);
    Refused for a uri elsewhere or with odd segments."""
    if _CONTROL.search(uri):
        raise Refused(f"[model_uri_refused] {field} {uri!r} holds control characters")
    if not uri.startswith(prefix):
        raise Refused(f"[model_uri_refused] {field} {uri!r} is not under {prefix}")
    parts = uri.removeprefix(prefix).split("/")
    inner = parts[:-1] if len(parts) > 1 and parts[-1] == "" else parts
    if len(inner) < 1 or any(part in ("", ".", "..") for part in inner):
        raise Refused(f"[model_uri_refused] {field} {uri!r} holds an empty, '.' or '..' segment")
    if not _MODEL_ID.match(parts[0]) or len(parts) < 2:
        raise Refused(
            f"[model_uri_refused] {field} {uri!r} names no model: expected "
            f"{prefix}<model-id>/<file or folder>"
        )
    return parts[0]


def env_from_refusal(ms: ModelServe, who: Requester) -> str | None:
    """Whether spec.envFrom could set a variable the operator owns (the keys of a ConfigMap
    or Secret are not known here, so the prefix must rule it out: it may begin no owned
    name), or reads a Secret for someone who is not an admin (a shared namespace holds
    other tenants' Secrets)."""
    for index, source in enumerate(ms.spec.env_from):
        prefix = source.prefix or ""
        clash = env_prefix_clash(ms.spec.runtime.value, prefix, admin=who.admin)
        if clash:
            return (
                f"[owned_flag] spec.envFrom[{index}] could set {clash}, which the operator "
                f"owns: give it a prefix that no such name begins with (prefix {prefix!r})"
            )
        if source.secret_ref is not None and not who.admin:
            return (
                f"[env_from_not_allowed] spec.envFrom[{index}].secretRef: only platform admins "
                "may put a Secret's keys into a model server's environment"
            )
    return None


def spec_refusal(ms: ModelServe, who: Requester, settings: ContractSettings) -> str | None:
    """What the spec may not ask for, whatever the contract says (the URL of an external
    server is checked apart: it needs the resolver)."""
    runtime = ms.spec.runtime
    flags = owned_flags(runtime.value, ms.spec.args)
    if flags:
        return (
            f"[owned_flag] spec.args may not set {flags[0]}: the operator sets it "
            "(model, address, served name, API key)"
        )
    expanded = expanded_args(ms.spec.args)
    if expanded:
        return (
            f"[arg_expansion] spec.args may not hold {expanded[0]!r}: Kubernetes would put a"
            " variable's value there after this check; write the value itself"
        )
    names = owned_env(runtime.value, [var.name for var in ms.spec.env])
    if names:
        return (
            f"[owned_flag] spec.env may not set {names[0]}: the operator owns that option"
            " (NVIDIA_*: the GPUs the container sees)"
        )
    if not who.admin:
        flags = owned_flags(runtime.value, ms.spec.args, admin=False)
        names = owned_env(runtime.value, [var.name for var in ms.spec.env], admin=False)
        if flags or names:
            return (
                f"[flag_not_allowed] only platform admins may set {(flags or names)[0]}: it"
                " takes code or weights from elsewhere than the model the platform fetched"
            )
    refusal = env_from_refusal(ms, who)
    if refusal is not None:
        return refusal
    if runtime is Runtime.EXTERNAL:
        if not who.admin and settings.external_for == "admins":
            return (
                "[external_not_allowed] only platform admins may create external ModelServes "
                "(CONTRACT_EXTERNAL_FOR=admins)"
            )
        return None
    if not ms.spec.model.uri:
        return "[model_uri_refused] spec.model.uri is required"
    refusal = (
        cache_refusal(ms, who, settings)
        or resources_refusal(ms, who, settings)
        or placement_refusal(ms, who, settings)
    )
    if refusal is not None:
        return refusal
    if ms.spec.image_pull_secrets and not who.admin:
        return (
            "[pull_secret_not_allowed] only platform admins may set spec.imagePullSecrets: "
            "a namespace may hold other tenants' registry credentials"
        )
    if ms.spec.placement.priority_class_name and not who.admin:
        return (
            "[priority_class_not_allowed] only platform admins may set "
            "spec.placement.priorityClassName: a higher priority preempts other tenants' pods"
        )
    autoscaling = ms.spec.autoscaling
    if autoscaling and not who.admin and (autoscaling.pinned or autoscaling.priority > 0):
        return (
            "[autoscaling_not_allowed] only platform admins may pin a model or raise its "
            "priority (spec.autoscaling.pinned, priority): either decides which tenants' "
            "models are put to sleep to make room for others"
        )
    return None


def cache_refusal(ms: ModelServe, who: Requester, settings: ContractSettings) -> str | None:
    """Whether a tenant's model cache is larger than CONTRACT_MAX_CACHE_SIZE, or of a
    StorageClass not in CONTRACT_CACHE_STORAGE_CLASSES: the claim is a volume the cluster
    provisions (and bills) at once, and its class decides what kind, and whether it is
    kept after the claim goes."""
    cache = ms.spec.model.cache
    if not cache.enabled or who.admin:
        return None
    size, limit = quantity_value(cache.size), quantity_value(settings.max_cache_size or "0")
    if size is None:
        return f"[cache_not_allowed] spec.model.cache.size {cache.size!r} is not a quantity"
    if settings.max_cache_size and limit is not None and size > limit:
        return (
            f"[cache_not_allowed] spec.model.cache.size {cache.size} is over the "
            f"{settings.max_cache_size} a tenant's model cache may have "
            "(CONTRACT_MAX_CACHE_SIZE)"
        )
    classes = split(settings.cache_storage_classes)
    name = cache.storage_class_name
    if name and name not in classes:
        allowed = ", ".join(classes) or "none: the cluster's default class only"
        return (
            f"[cache_not_allowed] spec.model.cache.storageClassName {name!r} is not one "
            f"tenants may name (CONTRACT_CACHE_STORAGE_CLASSES: {allowed})"
        )
    return None


def resources_refusal(ms: ModelServe, who: Requester, settings: ContractSettings) -> str | None:
    """Whether a tenant's server pod reserves more CPU or memory than CONTRACT_MAX_CPU or
    CONTRACT_MAX_MEMORY: what a pod requests is kept for it on its node whether it uses it
    or not, so a pod asking for a GPU node's every core keeps other tenants' pods off the
    GPUs it leaves free. Where only a limit is set, Kubernetes requests as much."""
    if who.admin:
        return None
    wanted = ms.spec.resources
    for name, request, limit, most, setting in (
        ("cpu", wanted.cpu, wanted.cpu_limit, settings.max_cpu, "CONTRACT_MAX_CPU"),
        ("memory", wanted.memory, wanted.memory_limit, settings.max_memory, "CONTRACT_MAX_MEMORY"),
    ):
        asked, field = (request, name) if request else (limit, f"{name}Limit")
        if not asked or not most:
            continue
        value, bound = quantity_value(asked), quantity_value(most)
        if value is None:
            return f"[resources_not_allowed] spec.resources.{field} {asked!r} is not a quantity"
        if bound is not None and value > bound:
            return (
                f"[resources_not_allowed] spec.resources.{field} {asked} is over the {most} "
                f"a tenant's server pod may reserve ({setting})"
            )
    return None


def placement_refusal(ms: ModelServe, who: Requester, settings: ContractSettings) -> str | None:
    """Whether a tenant's spec.placement reaches beyond their own server: a toleration of
    a taint not in CONTRACT_TENANT_TOLERATION_KEYS (a taint keeps nodes for someone; one
    without a key tolerates them all), or a pod (anti-)affinity term about other pods
    than the server's own (required anti-affinity is kept by the scheduler for the pods
    it selects too: it would keep other tenants' servers off the nodes it holds) or about
    other namespaces."""
    if who.admin:
        return None
    placement = ms.spec.placement
    allowed = split(settings.tenant_toleration_keys)
    for index, toleration in enumerate(placement.tolerations):
        if toleration.key not in allowed:
            what = f"the taint {toleration.key!r}" if toleration.key else "every taint"
            return (
                f"[placement_not_allowed] spec.placement.tolerations[{index}] tolerates {what}:"
                f" tenants may tolerate {', '.join(allowed) or 'no taint'}"
                " (CONTRACT_TENANT_TOLERATION_KEYS)"
            )
    affinity = placement.affinity
    for field, terms in (
        ("podAffinity", affinity.pod_affinity if affinity else None),
        ("podAntiAffinity", affinity.pod_anti_affinity if affinity else None),
    ):
        for where, term in _pod_affinity_terms(terms):
            refusal = _term_refusal(term, ms.name)
            if refusal is not None:
                return f"[placement_not_allowed] spec.placement.affinity.{field}.{where} {refusal}"
    return None


def _pod_affinity_terms(terms: Any) -> list[tuple[str, Any]]:
    """(where, term) of every PodAffinityTerm of a podAffinity or podAntiAffinity."""
    if not isinstance(terms, dict):
        return []
    found: list[tuple[str, Any]] = []
    required = terms.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    preferred = terms.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    for index, term in enumerate(required if isinstance(required, list) else [required]):
        found.append((f"requiredDuringSchedulingIgnoredDuringExecution[{index}]", term))
    for index, weighted in enumerate(preferred if isinstance(preferred, list) else [preferred]):
        term = weighted.get("podAffinityTerm") if isinstance(weighted, dict) else weighted
        found.append((f"preferredDuringSchedulingIgnoredDuringExecution[{index}]", term))
    return found


def _term_refusal(term: Any, name: str) -> str | None:
    if not isinstance(term, dict):
        return "is not an object"
    if term.get("namespaces") or term.get("namespaceSelector") is not None:
        return "names other namespaces: a tenant's terms are about their namespace only"
    selector = term.get("labelSelector") or {}
    labels = selector.get("matchLabels") if isinstance(selector, dict) else None
    if not isinstance(labels, dict) or labels.get(SERVER_LABEL) != name:
        return (
            f"selects other pods than this server's: its labelSelector.matchLabels must"
            f" hold {SERVER_LABEL}: {name}"
        )
    return None


def resource(review: Review, who: Requester, settings: ContractSettings) -> Resource:
    """The server as a create or update would leave it; Refused for a spec that may never run."""
    try:
        ms = ModelServe.from_body(review.object)
    except (ValidationError, KeyError, TypeError) as error:
        raise Refused(f"[invalid_modelserve] not a valid ModelServe: {error}") from error
    refusal = spec_refusal(ms, who, settings)
    if refusal is not None:
        raise Refused(refusal)
    model_id = None
    adapter_ids: list[str] = []
    if ms.spec.runtime is not Runtime.EXTERNAL and ms.spec.model.uri:
        prefix = settings.model_prefix
        if who.admin:
            model_id = _admin_model_id(ms.spec.model.uri, prefix)
        else:
            model_id = model_id_of(ms.spec.model.uri, prefix)
        # An adapter comes from the store as a model does: the same prefix, the same
        # allowlists for its record's id.
        for index, adapter in enumerate(ms.spec.adapters):
            field = f"spec.adapters[{index}].uri"
            found = (
                _admin_model_id(adapter.uri, prefix, field)
                if who.admin
                else model_id_of(adapter.uri, prefix, field)
            )
            if found is not None:
                adapter_ids.append(found)
    return Resource(
        namespace=review.namespace,
        name=review.name,
        model=ms.served_name,
        model_id=model_id,
        adapters=[adapter.name for adapter in ms.spec.adapters],
        adapter_ids=adapter_ids,
        reward_model=ms.spec.scaling.reward_model,
        runtime=ms.spec.runtime.value,
        image=ms.spec.image,
        replicas=ms.spec.most_replicas,
        gpus=ms.spec.resources.gpus,
        nodes=ms.spec.group_size,
        team=labels_of(review.object).get(TEAM_LABEL),
    )


def _admin_model_id(uri: str, prefix: str, field: str = "spec.model.uri") -> str | None:
    """Admins may serve from anywhere in the store; a uri under the prefix still names its model."""
    try:
        return model_id_of(uri, prefix, field)
    except Refused:
        return None


def external_url(review: Review) -> str | None:
    spec = spec_of(review.object)
    external = spec.get("external") if isinstance(spec, dict) else None
    url = external.get("url") if isinstance(external, dict) else None
    return url if isinstance(url, str) and spec.get("runtime") == Runtime.EXTERNAL else None


def scaled(review: Review, recorded: Server | None) -> Resource:
    """The server as a scale would leave it: the replicas of the Scale, the rest recorded."""
    spec = review.object.get("spec") or {}
    replicas = spec.get("replicas") if isinstance(spec, dict) else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise Refused(f"[invalid_review] the Scale's spec.replicas {replicas!r} is not a count")
    return with_recorded(
        Resource(namespace=review.namespace, name=review.name, replicas=replicas), recorded
    )


def owner_patch(review: Review, who: Requester) -> list[dict[str, Any]]:
    """JSON patch operations that stamp the owner label (and the team label, for a member
    of a team: their first, the one the create is decided for) on a ModelServe being
    created; Refused when the requester's name cannot be a label value."""
    if review.operation != "CREATE" or review.sub_resource or who.delegating:
        return []
    labels = labels_of(review.object)
    wanted: dict[str, str] = {}
    if OWNER_LABEL not in labels:
        if is_label_value(who.user):
            wanted[OWNER_LABEL] = who.user
        elif not who.admin:
            raise Refused(
                f"[invalid_owner] the Kubernetes user name {who.user!r} cannot be a label "
                f"value, so it cannot own a ModelServe ({OWNER_LABEL}); ask an admin or use "
                "the gateway"
            )
    # The team the create is decided for (the first of the requester's teams): stamped, so
    # that the ledger counts the server against the team whose limits admitted it.
    if TEAM_LABEL not in labels and who.teams and is_label_value(who.teams[0]):
        wanted[TEAM_LABEL] = who.teams[0]
    if not wanted:
        return []
    if not (review.object.get("metadata") or {}).get("labels"):
        return [{"op": "add", "path": "/metadata/labels", "value": wanted}]
    return [
        {
            "op": "add",
            "path": "/metadata/labels/" + key.replace("~", "~0").replace("/", "~1"),
            "value": value,
        }
        for key, value in wanted.items()
    ]


def response(
    uid: str, allowed: bool, message: str = "", patch: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    if patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}


# The reason code in brackets that every refusal's message starts with.
_REASON_CODE = re.compile(r"^\[([a-z0-9_]+)\]")


def verdict(answer: dict[str, Any]) -> tuple[bool, str]:
    """Whether an AdmissionReview answer allows, and its reason code for the metrics: the
    code a refusal's message starts with (`refused` for one without), `allowed` for an
    allowance (whose answer carries no message)."""
    reply = answer["response"]
    if reply["allowed"]:
        return True, "allowed"
    found = _REASON_CODE.match(reply.get("status", {}).get("message", ""))
    return False, found.group(1) if found else "refused"


def decision_response(uid: str, decision: Decision) -> dict[str, Any]:
    # kubectl prints the message after "admission webhook … denied the request: ".
    return response(uid, decision.allowed, f"[{decision.reason}] {decision.message}")


def _client_config(
    ca_bundle: bytes, path: str, url: str | None, service: tuple[str, str, int] | None
) -> dict[str, Any]:
    if (url is None) == (service is None):
        raise ValueError("give the webhook a url or a service, not both")
    client: dict[str, Any] = {"caBundle": base64.b64encode(ca_bundle).decode()}
    if url is not None:
        client["url"] = url.rstrip("/") + path
    else:
        assert service is not None
        namespace, service_name, port = service
        client["service"] = {
            "namespace": namespace,
            "name": service_name,
            "port": port,
            "path": path,
        }
    return client


def _webhook(
    hook: str,
    client: dict[str, Any],
    operations: list[str],
    resources: list[str],
    failure: str,
    namespace_selector: dict[str, Any] | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": hook,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
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
    keep anyone from stopping a server (the service itself refuses a non-owner's delete).
    The webhook has no side effects: the ledger follows the cluster's ModelServes.
    """
    client = _client_config(ca_bundle, PATH, url, service)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            _webhook(
                WEBHOOK,
                client,
                ["CREATE", "UPDATE"],
                [PLURAL, f"{PLURAL}/scale"],
                "Fail",
                namespace_selector,
            ),
            _webhook(DELETION_WEBHOOK, client, ["DELETE"], [PLURAL], "Ignore", namespace_selector),
        ],
    }


def build_mutating_webhook_configuration(
    *,
    ca_bundle: bytes,
    url: str | None = None,
    service: tuple[str, str, int] | None = None,
    namespace_selector: dict[str, Any] | None = None,
    name: str = "modelserve-contract",
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration that stamps the owner (and team) label on every
    ModelServe created, from the requester (fails closed, like creates)."""
    client = _client_config(ca_bundle, MUTATE_PATH, url, service)
    hook = _webhook(MUTATING_WEBHOOK, client, ["CREATE"], [PLURAL], "Fail", namespace_selector)
    hook["reinvocationPolicy"] = "Never"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [hook],
    }
