"""Every call docs/api.md names exists in its service, with that method.

The apps are built by their factories, as the services build them, without starting
them (their lifespans open the database and the clients; routing needs neither).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from pydantic import BaseModel, SecretStr
from starlette.routing import Match

from modelserve.common.tokens import TokenSettings
from modelserve.contract.app import create_app as create_contract
from modelserve.contract.settings import ContractSettings
from modelserve.download.app import create_app as create_download
from modelserve.download.settings import DownloadSettings
from modelserve.gateway.accounts import ApiKeyCreate, UserCreate, UserUpdate
from modelserve.gateway.app import create_app as create_gateway
from modelserve.gateway.routes.configure import Configure
from modelserve.gateway.servers import ServeRequest
from modelserve.gateway.settings import GatewaySettings

API = Path(__file__).resolve().parents[2] / "docs" / "api.md"
CALL = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)")
URL_VARIABLES = {"GATEWAY_URL": "gateway", "CONTRACT_URL": "contract", "DOWNLOAD_URL": "download"}


@pytest.fixture(scope="module")
def apps() -> dict[str, FastAPI]:
    tokens = TokenSettings(secret=SecretStr("a-test-secret-of-at-least-32-bytes!!"))
    return {
        "gateway": create_gateway(GatewaySettings(tokens=tokens)),
        "contract": create_contract(ContractSettings(tokens=tokens)),
        "download": create_download(DownloadSettings(tokens=tokens)),
    }


def service_of(section: str) -> str | None:
    for service in ("gateway", "contract", "download"):
        if section.lower().startswith(service):
            return service
    return None


def sections(markdown: str) -> Iterator[tuple[str, str]]:
    """(heading, text) of each `## ` section."""
    for part in re.split(r"^## ", markdown, flags=re.MULTILINE)[1:]:
        heading, _, text = part.partition("\n")
        yield heading.strip(), text


def documented_calls(markdown: str) -> list[tuple[str, str, str]]:
    """(service, method, path) of every `METHOD /path` in a service's sections."""
    calls = []
    for heading, text in sections(markdown):
        service = service_of(heading)
        if service is not None:
            calls += [(service, method, path) for method, path in CALL.findall(text)]
    return calls


def curl_calls(markdown: str) -> list[tuple[str, str, str]]:
    """(service, method, path) of every curl on the page, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", markdown)
    calls = []
    for line in joined.splitlines():
        if not line.lstrip().startswith(("curl ", "TOKEN=$(curl ")):
            continue
        url = re.search(r"\"\$(\w+_URL)(/[^\"?]*)", line)
        assert url is not None, line
        explicit = re.search(r" -X (\w+)", line)
        method = explicit.group(1) if explicit else ("POST" if " -d " in line else "GET")
        calls.append((URL_VARIABLES[url.group(1)], method, url.group(2)))
    return calls


def matches(app: FastAPI, method: str, path: str) -> bool:
    concrete = re.sub(r"\{[^}]+\}|\$\w+", "x1", path)
    scope = {"type": "http", "method": method, "path": concrete, "root_path": ""}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def test_every_documented_call_exists(apps: dict[str, FastAPI]) -> None:
    calls = documented_calls(API.read_text())
    assert len(calls) > 40
    assert {service for service, _, _ in calls} == set(apps)
    assert [call for call in calls if not matches(apps[call[0]], call[1], call[2])] == []


def test_every_curl_calls_a_route(apps: dict[str, FastAPI]) -> None:
    calls = curl_calls(API.read_text())
    assert len(calls) >= 12
    assert [call for call in calls if not matches(apps[call[0]], call[1], call[2])] == []


def test_the_check_would_catch_a_wrong_call(apps: dict[str, FastAPI]) -> None:
    assert not matches(apps["gateway"], "GET", "/serve")
    assert not matches(apps["gateway"], "POST", "/v1/chat")
    assert not matches(apps["download"], "GET", "/download/x1")
    assert matches(apps["gateway"], "GET", "/v1/models/meta-llama/Llama-3.1-8B")


def table_fields(markdown: str, after: str) -> set[str]:
    """The backticked names in the first column of the first table after `after`."""
    start = markdown.index(after)
    table = re.search(r"(\n\|.*)+", markdown[start:])
    assert table is not None
    fields: set[str] = set()
    for row in table.group(0).strip().splitlines()[2:]:
        fields.update(re.findall(r"`(\w+)`", row.split("|")[1]))
    return fields


@pytest.mark.parametrize(
    ("after", "model"),
    [("**`POST /serve`** takes:", ServeRequest)],
)
def test_request_fields_are_the_models(after: str, model: type[BaseModel]) -> None:
    assert table_fields(API.read_text(), after) == set(model.model_fields)


@pytest.mark.parametrize(
    ("call", "model"), [("`POST /auth/keys`", ApiKeyCreate), ("`POST /users`", UserCreate)]
)
def test_bodies_in_tables_are_the_models(call: str, model: type[BaseModel]) -> None:
    """The body `{"a", "b"}` a table row gives for a call has the model's fields."""
    row = next(line for line in API.read_text().splitlines() if line.startswith(f"| {call}"))
    body = re.search(r"\{[^}]*\}", row.split("|")[-2])
    assert body is not None, row
    assert set(re.findall(r'"(\w+)"', body.group(0))) == set(model.model_fields)


def test_configure_fields_are_the_models() -> None:
    text = API.read_text()
    paragraph = text[text.index("Fields: `model`") :].split("\n\n")[0]
    assert set(re.findall(r"`(\w+)`", paragraph)) == set(Configure.model_fields)


def test_user_update_fields() -> None:
    line = next(line for line in API.read_text().splitlines() if "`PATCH /users/" in line)
    assert set(re.findall(r"`(\w+)`", line.split("|")[2])) == set(UserUpdate.model_fields)
