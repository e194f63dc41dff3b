"""The gateway's one client of the download service (model records and the registry),
and its typed answers.

Two ways of asking, each on purpose:

- with the gateway's own service token: the model records a serve decision or a listing
  reads (`records`, `record`), and the automatic rollbacks the platform reports
  (`report_rollback`);
- with the caller's own Authorization header: everything a person does to the registry
  (register, uploads, set_active, active, history) and to downloads (start, list,
  follow, cancel, retry), so that the download service judges what that person may see
  and do (and its contract, whether they may download), exactly as if they had asked it
  directly.

Errors: a refusal of the download service becomes an `ApiError` with its status, code and
message (the gateway answers it as it was); a service that cannot be reached or answers
what the gateway cannot read is 503 `download_unavailable`; without a download service
(GATEWAY_DOWNLOAD_URL unset) there are no records, and registry calls answer 404
`registry_not_configured`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from modelserve.common.errors import ApiError
from modelserve.common.model_versions import (
    ActiveVersion,
    HistoryEntry,
    RollbackAnswer,
    SetActiveAnswer,
)
from modelserve.common.tokens import TokenSigner
from modelserve.gateway.contracts import SERVICE_NAME
from modelserve.gateway.peer_errors import peer_refusal

# The ids the download service gives models (its check_model_id).
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The download service's upload ids (32 hex digits).
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_PAGE = 1000  # the download service's largest page of GET /models


class _Passing(BaseModel):
    """An answer whose fields the gateway reads are typed; the others pass through."""

    model_config = ConfigDict(extra="allow")


class ModelRecord(_Passing):
    """A model in the platform store (downloaded or registered), as the download service
    records it: size, sha256, files, GGUF metadata, … pass through."""

    id: str
    name: str
    format: str
    uri: str
    origin: str = "download"
    tags: list[str] = []
    requested_by: str = ""  # whoever queued it: a registered version's registrant


class RegistrationJob(_Passing):
    """POST /models/register: the job that copies, hashes and records the version
    (state, progress, …; the same as `GET /status/{id}` of the download service)."""

    model_id: str
    kind: str
    state: str


class DownloadJob(RegistrationJob):
    """A download's job as `GET /status/{id}` of the download service gives it: state,
    bytes, rate, ETA, error, … (a registration's job is one too, `kind` register)."""


class StartedDownload(BaseModel):
    """A download asked for: its job, and whether this request queued it (202) or found
    it queued, copying or ready already (200)."""

    job: DownloadJob
    queued: bool


class UploadPart(BaseModel):
    part_number: int
    url: str


class Upload(_Passing):
    """An upload: where to PUT its bytes while it is open (one `url`, or `parts` of
    `part_size` bytes), and whether it is complete or registered."""

    upload_id: str
    filename: str
    size: int
    uri: str
    state: str
    registered_as: str | None = None
    url: str | None = None
    part_size: int | None = None
    parts: list[UploadPart] = []
    expires_at: dt.datetime | None = None


class HistoryPage(BaseModel):
    entries: list[HistoryEntry]
    total: int


class DownloadPage(BaseModel):
    jobs: list[DownloadJob]
    total: int


class RollbackReport(BaseModel):
    """An automatic rollback of a rollout (`rollout_id`: the set_active's history id) on
    one server."""

    rollout_id: int
    server: str  # namespace/name
    server_uid: str
    failed_id: str
    restored_id: str | None = None
    reason: str | None = None
    message: str | None = None
    # Whose the server is: only the platform's and the set_active's actor's move the name.
    server_owner: str | None = None
    platform_server: bool = False


def _unavailable(detail: str) -> ApiError:
    return ApiError(503, "download_unavailable", f"the download service {detail}")


def _job_path(template: str, model_id: str) -> str:
    """`template` with the job's id, or the download service's 404 for an id no job can
    have: asking would be pointless, and `.` or `..` (a dot segment, which the client
    resolves) would reach another route."""
    if not _MODEL_ID.match(model_id):
        raise ApiError(404, "download_not_found", f"no download of model {model_id}")
    return template.format(quote(model_id, safe=""))


def _upload_path(template: str, upload_id: str) -> str:
    """`template` with the upload's id, or the download service's 404 for an id no upload
    has (`.` or `..` would reach another of its routes)."""
    if not _UPLOAD_ID.match(upload_id):
        raise ApiError(404, "upload_not_found", f"no upload {upload_id!r} of yours")
    return template.format(upload_id)


def _read(kind: Any, data: Any) -> Any:
    """`data` as `kind` (a model or a list of them), or 503: the gateway cannot read it."""
    try:
        return TypeAdapter(kind).validate_python(data)
    except ValidationError as error:
        raise _unavailable(f"sent an answer the gateway cannot read: {error}") from error


class RegistryClient:
    """The download service, as the gateway asks it (see the module's docstring)."""

    def __init__(self, url: str | None, http: httpx.AsyncClient, signer: TokenSigner) -> None:
        self._url = url.rstrip("/") if url else None
        self._http = http
        self._signer = signer

    @property
    def configured(self) -> bool:
        return self._url is not None

    def _service(self) -> str:
        return f"Bearer {self._signer.service_token(SERVICE_NAME)}"

    async def _call(
        self,
        method: str,
        path: str,
        authorization: str,
        *,
        json: Any = None,
        params: Any = None,
    ) -> httpx.Response:
        """The answer to a call; a refusal (4xx, or a 5xx it explains) as ApiError."""
        if self._url is None:
            raise ApiError(
                404,
                "registry_not_configured",
                "this gateway has no download service (GATEWAY_DOWNLOAD_URL): no registry",
            )
        try:
            response = await self._http.request(
                method,
                f"{self._url}{path}",
                headers={"Authorization": authorization},
                json=json,
                params=params,
            )
        except httpx.HTTPError as error:
            raise _unavailable(f"cannot be reached: {error}") from error
        if response.status_code >= 400:
            raise peer_refusal(response, _unavailable)
        return response

    # --- model records (the gateway's own token) -------------------------------------------

    async def records(
        self, *, name: str | None = None, tags: Sequence[str] = (), origin: str | None = None
    ) -> list[ModelRecord]:
        """Every record that matches (all of `tags`), by name then age; none without a
        download service."""
        if self._url is None:
            return []
        found: list[ModelRecord] = []
        while True:
            params: dict[str, Any] = {"limit": _PAGE, "offset": len(found)}
            params |= {k: v for k, v in (("name", name), ("origin", origin)) if v is not None}
            if tags:
                params["tag"] = list(tags)
            response = await self._call("GET", "/models", self._service(), params=params)
            page: list[ModelRecord] = _read(list[ModelRecord], response.json())
            found += page
            total = int(response.headers.get("x-total-count", len(found)))
            if not page or len(found) >= total:
                return found

    async def record(self, model_id: str) -> ModelRecord | None:
        if self._url is None or not _MODEL_ID.match(model_id):
            return None  # the download service takes no other id: no need to ask
        try:
            response = await self._call("GET", f"/models/{model_id}", self._service())
        except ApiError as error:
            if error.status_code == 404:
                return None
            raise
        record: ModelRecord = _read(ModelRecord, response.json())
        return record

    async def active_version(self, name: str) -> ActiveVersion | None:
        """The active version of model name `name`, whoever set it (the gateway's token):
        what `POST /serve` runs when it names the model."""
        if self._url is None:
            return None
        response = await self._call("GET", "/models/active", self._service(), params={"name": name})
        found: list[ActiveVersion] = _read(list[ActiveVersion], response.json())
        return next(iter(found), None)

    async def report_rollback(self, report: RollbackReport | Mapping[str, Any]) -> RollbackAnswer:
        """Record an automatic rollback (once per rollout and server, however often it is
        reported); the name's active version moves back only if it still is the failed one."""
        body = report if isinstance(report, RollbackReport) else RollbackReport(**report)
        response = await self._call(
            "POST", "/models/rollbacks", self._service(), json=body.model_dump()
        )
        answer: RollbackAnswer = _read(RollbackAnswer, response.json())
        return answer

    # --- the registry, as the caller -------------------------------------------------------

    async def register(self, authorization: str, body: Mapping[str, Any]) -> RegistrationJob:
        response = await self._call("POST", "/models/register", authorization, json=dict(body))
        job: RegistrationJob = _read(RegistrationJob, response.json())
        return job

    async def registration(self, authorization: str, model_id: str) -> RegistrationJob:
        """Where the registration (or download) of `model_id` stands."""
        path = _job_path("/status/{}", model_id)
        job: RegistrationJob = _read(
            RegistrationJob, (await self._call("GET", path, authorization)).json()
        )
        return job

    async def create_upload(self, authorization: str, filename: str, size: int) -> Upload:
        body = {"filename": filename, "size": size}
        response = await self._call("POST", "/models/uploads", authorization, json=body)
        upload: Upload = _read(Upload, response.json())
        return upload

    async def upload(self, authorization: str, upload_id: str) -> Upload:
        path = _upload_path("/models/uploads/{}", upload_id)
        upload: Upload = _read(Upload, (await self._call("GET", path, authorization)).json())
        return upload

    async def delete_upload(self, authorization: str, upload_id: str) -> None:
        await self._call("DELETE", _upload_path("/models/uploads/{}", upload_id), authorization)

    async def complete_upload(
        self, authorization: str, upload_id: str, parts: Sequence[Mapping[str, Any]]
    ) -> Upload:
        path = _upload_path("/models/uploads/{}/complete", upload_id)
        body = {"parts": [dict(part) for part in parts]}
        response = await self._call("POST", path, authorization, json=body)
        upload: Upload = _read(Upload, response.json())
        return upload

    async def set_active(
        self, authorization: str, model_id: str, *, reason: str | None = None
    ) -> SetActiveAnswer:
        body = {"id": model_id, "reason": reason}
        response = await self._call("POST", "/models/set_active", authorization, json=body)
        answer: SetActiveAnswer = _read(SetActiveAnswer, response.json())
        return answer

    async def active(self, authorization: str, name: str | None = None) -> list[ActiveVersion]:
        params = {"name": name} if name is not None else None
        response = await self._call("GET", "/models/active", authorization, params=params)
        found: list[ActiveVersion] = _read(list[ActiveVersion], response.json())
        return found

    async def history(
        self, authorization: str, *, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> HistoryPage:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if name is not None:
            params["name"] = name
        response = await self._call("GET", "/models/history", authorization, params=params)
        entries: list[HistoryEntry] = _read(list[HistoryEntry], response.json())
        total = int(response.headers.get("x-total-count", len(entries)))
        return HistoryPage(entries=entries, total=total)

    # --- downloads, as the caller ------------------------------------------------------------

    async def start_download(
        self, authorization: str, body: Mapping[str, Any], model_id: str | None = None
    ) -> StartedDownload:
        """`POST /download/{model_id}` (the seeds' call: upstream `<model_id>/`) when
        `model_id` is given, else `POST /downloads` naming the source in `body`."""
        if model_id is None:
            path = "/downloads"
        elif model_id in (".", ".."):  # a dot segment: the client would resolve it away
            raise ApiError(422, "invalid_model_id", f"{model_id!r} is not a model id")
        else:
            path = f"/download/{quote(model_id, safe='')}"
        response = await self._call("POST", path, authorization, json=dict(body))
        job: DownloadJob = _read(DownloadJob, response.json())
        return StartedDownload(job=job, queued=response.status_code == 202)

    async def downloads(
        self, authorization: str, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> DownloadPage:
        """A page of the jobs the caller may see, newest first, and how many there are."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state is not None:
            params["state"] = state
        response = await self._call("GET", "/downloads", authorization, params=params)
        jobs: list[DownloadJob] = _read(list[DownloadJob], response.json())
        total = int(response.headers.get("x-total-count", len(jobs)))
        return DownloadPage(jobs=jobs, total=total)

    async def download(self, authorization: str, model_id: str) -> DownloadJob:
        path = _job_path("/status/{}", model_id)
        response = await self._call("GET", path, authorization)
        job: DownloadJob = _read(DownloadJob, response.json())
        return job

    async def manage_download(self, authorization: str, model_id: str, action: str) -> DownloadJob:
        """`action` is `cancel` or `retry`."""
        path = _job_path("/download/{}/" + action, model_id)
        response = await self._call("POST", path, authorization)
        job: DownloadJob = _read(DownloadJob, response.json())
        return job
