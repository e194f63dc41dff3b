"""Other LLM gateways in front of the same upstream, for `bench/gateway_proxy.py`: LiteLLM's
proxy with a key that has limits, and Portkey's open-source gateway.

LiteLLM keeps its virtual keys in PostgreSQL through prisma, whose query and schema
engines are binaries that prisma downloads from its own CDN at first use (no PyPI or npm
package ships them), which this machine cannot reach. So LiteLLM runs without a
database, and its key comes from a custom auth function (`general_settings.custom_auth`,
a module written into the run's folder) that answers for one key with the limits a
virtual key would carry. LiteLLM enforces two of them with no database, in memory:
`rpm_limit` (its parallel request limiter, the same hook that limits a database key) and
a per-model budget (`model_max_budget`, spend counted per key and model after each
answer, with `enable_post_custom_auth_checks`). A key's own `max_budget` it checks only
for keys read from the database, and a proxy-wide `max_budget` without one it says it
does not enforce; what a database would add to each request (the key read from its
in-memory cache, spend written in batches in the background) is not measured.
`check_litellm_limits` proves the two limits refuse, with keys of tiny limits.

Portkey's gateway (npm `@portkey-ai/gateway`) has no keys, budgets nor rate limits of
its own in the open-source build: each request names its provider and upstream in
headers (`x-portkey-provider`, `x-portkey-custom-host`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelserve.testbed.npm_tools import npm_package
from modelserve.testbed.processes import ManagedProcess, free_port, http_ok
from modelserve.testbed.venvs import tool_venv

LITELLM_VERSION = "1.106.2"
PORTKEY_VERSION = "1.15.2"
LITELLM_MASTER_KEY = "sk-bench-master-key-0123456789abcdef"
LITELLM_KEY = "sk-bench-key-0123456789abcdef"
LITELLM_RATE_KEY = "sk-bench-rate-key-0123456789abcdef"
LITELLM_BUDGET_KEY = "sk-bench-budget-key-0123456789abcdef"
# What LiteLLM charges per token of the stub (its own price list knows no `stub`): without
# a price every answer costs 0 and LiteLLM skips budget checks for zero-cost models.
LITELLM_COST_PER_TOKEN = 0.000001
# The tight keys' limits: two requests a minute; less than one answer's cost.
TIGHT_RPM = 2
TIGHT_BUDGET = 0.000001
# LiteLLM adds an answer's cost to the key's spend after the answer: the budget refuses
# the requests that come once it has.
SPEND_SETTLES_SECONDS = 1.0

# The custom auth function LiteLLM imports from the run's folder. Unknown keys are
# refused as LiteLLM refuses an unknown virtual key.
_AUTH_MODULE = '''"""The bench's keys and their limits (modelserve.testbed.proxy_peers)."""
import json

from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth

KEYS = json.loads({keys!r})


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    limits = KEYS.get(api_key)
    if limits is None:
        raise Exception("unknown key")
    return UserAPIKeyAuth(api_key=api_key, **limits)
'''


@dataclass(frozen=True)
class Peer:
    """A started peer: where it answers (its OpenAI base path is /v1) and what each
    request must send."""

    name: str
    port: int
    headers: dict[str, str]
    process: ManagedProcess
    limits: str  # what it enforces, in words


def litellm_venv() -> Path:
    """LiteLLM's proxy in a virtual environment of its own, made once per version."""
    return tool_venv("litellm", LITELLM_VERSION, [f"litellm[proxy]=={LITELLM_VERSION}"])


def _key_limits(alias: str, rpm: int, budget: float, model: str) -> dict[str, object]:
    return {
        "token": f"{alias}-hash",
        "key_alias": alias,
        "user_id": alias,
        "rpm_limit": rpm,
        "model_max_budget": {model: {"budget_limit": budget, "time_period": "30d"}},
    }


def start_litellm(folder: Path, upstream: str, model: str, *, rpm: int, budget: float) -> Peer:
    """LiteLLM's proxy (one worker) on `upstream` as `model`, with the bench's key held to
    `rpm` requests a minute and a `budget` (US dollars at LITELLM_COST_PER_TOKEN) for the
    model, both far above what a run sends so that every request is checked and none is
    refused; and the tight keys of `check_litellm_limits`."""
    venv = litellm_venv()
    keys = {
        LITELLM_KEY: _key_limits("bench", rpm, budget, model),
        LITELLM_RATE_KEY: _key_limits("tight-rate", TIGHT_RPM, budget, model),
        LITELLM_BUDGET_KEY: _key_limits("tight-budget", rpm, TIGHT_BUDGET, model),
    }
    (folder / "bench_keys.py").write_text(_AUTH_MODULE.format(keys=json.dumps(keys)))
    config = folder / "litellm.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "model_list": [
                    {
                        "model_name": model,
                        "litellm_params": {
                            "model": f"openai/{model}",
                            "api_base": upstream,
                            "api_key": "none",
                            "input_cost_per_token": LITELLM_COST_PER_TOKEN,
                            "output_cost_per_token": LITELLM_COST_PER_TOKEN,
                        },
                    }
                ],
                "general_settings": {
                    "master_key": LITELLM_MASTER_KEY,
                    "custom_auth": "bench_keys.user_api_key_auth",
                    "custom_auth_run_common_checks": True,
                },
                "litellm_settings": {"enable_post_custom_auth_checks": True},
            }
        )
    )
    port = free_port()
    process = ManagedProcess(
        "litellm",
        [venv / "bin" / "litellm", "--config", config, "--port", str(port), "--num_workers", "1"],
        folder / "litellm.log",
        # The price list that ships in the wheel, not one fetched from the internet.
        env={"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        cwd=folder,
    )
    process.start()
    process.wait_until(
        lambda: http_ok(f"http://127.0.0.1:{port}/health/liveliness"), 180, "serving"
    )
    return Peer(
        "litellm",
        port,
        {"Authorization": f"Bearer {LITELLM_KEY}"},
        process,
        f"key rpm_limit {rpm:,} and model budget ${budget:,.0f} (in memory, no database)",
    )


def check_litellm_limits(peer: Peer, model: str) -> list[str]:
    """Whether LiteLLM refuses past each limit, in words: a key with TIGHT_RPM requests a
    minute must be refused its next one, and a key whose budget is less than one answer's
    cost must be refused once that answer's cost was counted."""
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}]}
    found = []
    with httpx.Client(base_url=f"http://127.0.0.1:{peer.port}/v1", timeout=30) as client:

        def ask(key: str) -> str:
            answer = client.post(
                "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            return f"{answer.status_code} " + ("ok" if answer.is_success else _error(answer))

        rate = [ask(LITELLM_RATE_KEY) for _ in range(TIGHT_RPM + 1)]
        enforced = rate[-1].startswith("429") and all(o.endswith("ok") for o in rate[:-1])
        found.append(f"{TIGHT_RPM} rpm key: {', '.join(rate)}: {_enforced(enforced)}")
        budget = [ask(LITELLM_BUDGET_KEY)]
        time.sleep(SPEND_SETTLES_SECONDS)
        budget.append(ask(LITELLM_BUDGET_KEY))
        enforced = budget[0].endswith("ok") and "budget_exceeded" in budget[1]
        found.append(f"${TIGHT_BUDGET} budget key: {', '.join(budget)}: {_enforced(enforced)}")
    return found


def _enforced(ok: bool) -> str:
    return "enforced" if ok else "NOT enforced"


def _error(answer: httpx.Response) -> str:
    try:
        error = answer.json().get("error", {})
    except ValueError:
        return "?"
    return str(error.get("type") or error.get("code") or "?")


def start_portkey(folder: Path, upstream: str) -> Peer:
    """Portkey's gateway under node, on a free port; each request names `upstream` (an
    OpenAI base URL) as its host, with the provider `openai`."""
    package = npm_package("@portkey-ai/gateway", PORTKEY_VERSION)
    port = free_port()
    process = ManagedProcess(
        "portkey",
        ["node", package / "build" / "start-server.js", f"--port={port}", "--headless"],
        folder / "portkey.log",
        env={"NODE_ENV": "production"},
        cwd=folder,
    )
    process.start()
    process.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/"), 60, "serving")
    headers = {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": upstream,
        "Authorization": "Bearer none",
    }
    return Peer("portkey", port, headers, process, "none (the open-source build has none)")
