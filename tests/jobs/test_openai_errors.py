"""The jobs service's error answers under /v1 (unit: its exception handlers on a small app
of two routes, through Starlette's test client): a failure no handler expected is a 500
in OpenAI's shape there, its request id in the message and the header; the platform's
shape elsewhere."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from modelserve.common.errors import install_error_handlers
from modelserve.common.request_ids import HEADER, RequestIds
from modelserve.jobs.openai_errors import install_openai_errors


def failing_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestIds)
    install_error_handlers(app)
    install_openai_errors(app)

    async def fail() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/batches/boom", fail)
    app.add_api_route("/jobs/boom", fail)
    return app


def test_an_unexpected_failure_under_v1_is_a_500_in_openai_shape() -> None:
    with TestClient(failing_app(), raise_server_exceptions=False) as client:
        answer = client.get("/v1/batches/boom", headers={HEADER: "trace-500"})
        elsewhere = client.get("/jobs/boom", headers={HEADER: "trace-501"})
    assert answer.status_code == 500
    assert answer.json() == {
        "error": {
            "message": "the service failed on this request; quote the request id when "
            "reporting it (request id trace-500)",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    assert answer.headers[HEADER] == "trace-500"
    assert elsewhere.status_code == 500
    assert elsewhere.json()["error"]["request_id"] == "trace-501"
    assert elsewhere.headers[HEADER] == "trace-501"
