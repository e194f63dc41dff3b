"""GET /config's settings: everything shown, nothing that grants access."""

from __future__ import annotations

import json

from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings
from modelserve.gateway.operations.redaction import REDACTED, redact_url, redacted_settings
from modelserve.gateway.settings import GatewaySettings

JWT_SECRET = "the-gateway-jwt-secret-of-at-least-32-bytes"
SECRETS = (JWT_SECRET, "db-password", "sslpw", "admin-password", "metrics-token")


def settings() -> GatewaySettings:
    return GatewaySettings(
        tokens=TokenSettings(secret=SecretStr(JWT_SECRET)),
        database_url=SecretStr("postgresql://modelserve:db-password@db:5432/ms?sslpassword=sslpw"),
        admin_password=SecretStr("admin-password"),
        metrics_token=SecretStr("metrics-token"),
        contract_url="http://contract:8201",
    )


def test_no_secret_is_in_the_answer() -> None:
    shown, redacted = redacted_settings(settings())
    text = json.dumps(shown)
    assert [secret for secret in SECRETS if secret in text] == []
    assert sorted(redacted) == ["admin_password", "database_url", "metrics_token", "tokens.secret"]


def test_every_setting_is_shown_with_its_value() -> None:
    shown, _ = redacted_settings(settings())
    assert set(shown) == set(GatewaySettings.model_fields)
    assert set(shown["tokens"]) == set(TokenSettings.model_fields)
    assert shown["tokens"]["secret"] == REDACTED
    assert shown["admin_password"] == REDACTED
    assert shown["contract_url"] == "http://contract:8201"
    assert shown["max_body_bytes"] == 8 << 20
    # The database URL keeps where it points, not how to get in.
    assert shown["database_url"] == "postgresql://modelserve:***@db:5432/ms?sslpassword=***"


def test_unset_secrets_stay_null() -> None:
    shown, redacted = redacted_settings(
        GatewaySettings(tokens=TokenSettings(secret=SecretStr(JWT_SECRET)))
    )
    assert shown["metrics_token"] is None
    assert shown["admin_password"] is None
    assert "metrics_token" not in redacted


def test_urls() -> None:
    assert (
        redact_url("http://user:pw@host:80/p?q=1", query=False) == "http://user:***@host:80/p?q=1"
    )
    assert redact_url("http://host/p?token=t&x=", query=True) == "http://host/p?token=***&x=***"
    assert redact_url("http://[::1]:8080/", query=False) == "http://[::1]:8080/"
    assert redact_url("not a url", query=False) is None
    assert redact_url("http://host:notaport/", query=False) is None


def test_plain_urls_lose_users_query_values_and_unreadable_credentials() -> None:
    """A setting that is no secret may still hold one in its URL: a token as the user
    (`https://<token>@host`), an `api_key` in the query, a password in a URL that does
    not parse (a port out of range)."""
    shown, redacted = redacted_settings(
        GatewaySettings(
            tokens=TokenSettings(secret=SecretStr(JWT_SECRET)),
            contract_url="http://svc:pa55word@contract:99999/",
            jobs_url="https://ghp_T0KEN@jobs:8203/",
            otlp_endpoint="https://collector/v1/traces?api_key=SECRETKEY",
        )
    )
    text = json.dumps(shown)
    assert [s for s in ("pa55word", "ghp_T0KEN", "SECRETKEY") if s in text] == []
    assert shown["contract_url"] == REDACTED
    assert shown["jobs_url"] == "https://***@jobs:8203/"
    assert shown["otlp_endpoint"] == "https://collector/v1/traces?api_key=***"
    assert {"contract_url", "jobs_url", "otlp_endpoint"} <= set(redacted)
