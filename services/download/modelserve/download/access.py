"""Who may start a download: admins and platform services, or users whose contract says
so. The contract service decides, asked with the user's own token."""

from __future__ import annotations

import posixpath

import httpx

from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims
from modelserve.download.sources import printable


async def check_download(
    claims: Claims,
    authorization: str | None,
    model: str,
    *,
    contract_url: str | None,
    http: httpx.AsyncClient,
) -> None:
    """Return if `claims` may download `model`; raise a 403 (or 503) otherwise."""
    if claims.is_admin or claims.is_service:
        return
    if contract_url is None:
        raise ApiError(
            403,
            "downloads_not_allowed",
            "only admins may start downloads: this service has no contract service to ask",
        )
    try:
        response = await http.post(
            f"{contract_url.rstrip('/')}/decide",
            json={"action": "download", "resource": {"model": model}},
            headers={"Authorization": authorization or ""},
        )
    except httpx.HTTPError as error:
        raise ApiError(
            503, "contract_unavailable", f"the contract service cannot be reached: {error}"
        ) from error
    if response.status_code != 200:
        raise ApiError(
            503,
            "contract_unavailable",
            f"the contract service answered {response.status_code}: {response.text[:200]}",
        )
    decision = response.json()
    if not decision.get("allowed"):
        raise ApiError(
            403,
            str(decision.get("reason", "downloads_not_allowed")),
            str(decision.get("message", "the contract does not allow this download")),
        )


def visible_to(claims: Claims) -> str | None:
    """Whose downloads and models the caller sees: everyone's (None) for admins and
    services, else their own: those they asked for (`Jobs.get` and the others filter)."""
    return None if claims.is_admin or claims.is_service else claims.sub


def decision_name(bucket: str, key: str | None, prefix: str | None) -> str:
    """The model name a download decision judges: what the source is called (the key's
    basename, or the folder's: the model id in the seeds' call), never a name the caller
    gives, which only labels the record."""
    path = key if key is not None else (prefix or "").rstrip("/")
    # Escaped like what is recorded: a source that is refused later may hold a NUL byte or
    # a lone surrogate, which the request to the contract service cannot carry.
    return printable(posixpath.basename(path) or bucket, limit=1024) or bucket


def may_manage(claims: Claims, requested_by: str) -> bool:
    """Cancel or retry: admins, services and whoever asked for the download."""
    return claims.is_admin or claims.is_service or claims.sub == requested_by
