"""`key_may_go_to`: the hosts an API-key Secret names are the only ones its key goes to
(the operator's probe and the gateway's requests both ask it)."""

from __future__ import annotations

import pytest

from modelserve.common.modelserve import API_KEY_HOSTS_ANNOTATION, key_may_go_to

HOSTS = {API_KEY_HOSTS_ANNOTATION: "api.openai.com, example.internal:8443,[::1]:8080"}


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.openai.com/v1", True),
        ("https://API.OpenAI.com./v1", True),
        ("https://api.openai.com:443/v1", True),
        ("https://api.openai.com:8443/v1", False),  # a port not named
        ("https://example.internal:8443/v1", True),
        ("https://example.internal/v1", False),
        ("http://[::1]:8080/v1", True),
        ("https://api.openai.com@evil.example/v1", False),  # userinfo: the host is evil
        ("https://evil.example/v1?h=api.openai.com", False),
        ("https://evil.example/api.openai.com/v1", False),
        ("https://api.openai.com.evil.example/v1", False),
        ("ftp://api.openai.com/v1", False),
        ("https://api.openai.com:99999/v1", False),  # not a port
        ("not a url", False),
    ],
)
def test_a_key_goes_only_to_a_named_host(url: str, allowed: bool) -> None:
    assert key_may_go_to(HOSTS, url) is allowed


def test_without_the_annotation_a_key_goes_nowhere() -> None:
    assert not key_may_go_to(None, "https://api.openai.com/v1")
    assert not key_may_go_to({}, "https://api.openai.com/v1")
    assert not key_may_go_to({API_KEY_HOSTS_ANNOTATION: " , "}, "https://api.openai.com/v1")
