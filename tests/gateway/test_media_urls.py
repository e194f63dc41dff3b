"""Which media URLs of a chat request the gateway passes on to a model server (which
would fetch them from inside the cluster). Names are resolved by the machine's own
resolver only where it answers from /etc/hosts or a number (`localhost`, `2130706433`):
no test here asks a DNS server. (The proxy's refusal, before the model server sees
anything: test_dispatch.py.)"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from modelserve.common.addresses import Address
from modelserve.gateway.media_urls import MediaRules, MediaUrls, media_urls
from modelserve.gateway.openai_errors import OpenAIError

PUBLIC = "http://93.184.215.14/cat.png"  # an address literal: nothing is resolved


def chat(*parts: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Describe images."},
            {"role": "user", "content": [{"type": "text", "text": "What is it?"}, *parts]},
        ],
    }


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "low"}}


def refusal(url: str, rules: MediaRules | None = None) -> str | None:
    return asyncio.run(MediaUrls(rules or MediaRules()).refusal(url))


def test_every_url_field_of_every_content_part_is_found() -> None:
    payload = chat(
        image("http://a/1.png"),
        {"type": "image_url", "image_url": "http://b/2.png"},  # a bare string
        {"type": "video_url", "video_url": {"url": "http://c/3.mp4"}},
        {"type": "audio_url", "audio_url": {"url": "http://d/4.wav"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    )
    payload["messages"].append({"role": "assistant", "content": None})
    assert list(media_urls(payload)) == [
        ("messages[1].content[1].image_url.url", "http://a/1.png"),
        ("messages[1].content[2].image_url", "http://b/2.png"),
        ("messages[1].content[3].video_url.url", "http://c/3.mp4"),
        ("messages[1].content[4].audio_url.url", "http://d/4.wav"),
    ]
    assert list(media_urls({"prompt": "http://a/"})) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://127.0.0.1:8201/v1/contracts",
        "http://10.43.0.10/",  # a Service range
        "http://192.168.1.1/",
        "http://100.100.100.200/",  # CGNAT (Alibaba's metadata service)
        "http://[::1]/",
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://[fd00::1]/",
        "http://0.0.0.0:8080/",
        "http://localhost:8200/v1/models",  # /etc/hosts
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0x7f.1/",  # and in hex
    ],
)
def test_loopback_link_local_private_and_reserved_hosts_are_refused(url: str) -> None:
    why = refusal(url)
    assert why is not None and "address" in why, why


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("file:///etc/passwd", "data: URL or an http or https URL"),
        ("gopher://93.184.215.14/", "data: URL or an http or https URL"),
        ("s3://inference-models/models/x/", "data: URL or an http or https URL"),
        ("http://user:pw@93.184.215.14/", "user name or password"),
        ("http:///path", "names no host"),
        ("http://93.184.215.14:99999/", "not valid"),
    ],
)
def test_other_schemes_credentials_and_broken_urls_are_refused(url: str, said: str) -> None:
    why = refusal(url)
    assert why is not None and said in why, why


def test_data_urls_and_public_addresses_pass() -> None:
    assert refusal("data:image/png;base64,iVBORw0KGgo=") is None
    assert refusal("DATA:image/png;base64,iVBORw0KGgo=") is None
    assert refusal(PUBLIC) is None
    assert refusal("https://[2606:2800:220:1:248:1893:25c8:1946]/x.png") is None


def test_without_remote_media_only_data_urls_pass() -> None:
    rules = MediaRules.of(remote=False, hosts="")
    assert refusal("data:image/png;base64,iVBORw0KGgo=", rules) is None
    why = refusal(PUBLIC, rules)
    assert why is not None and "GATEWAY_REMOTE_MEDIA=false" in why


def test_with_listed_hosts_only_those_pass_unresolved() -> None:
    rules = MediaRules.of(remote=True, hosts=" images.example.com, *.cdn.example.org. ,")
    assert rules.hosts == ("images.example.com", "*.cdn.example.org")
    for url in ("https://images.example.com/a.png", "https://eu.cdn.example.org/b.png"):
        assert refusal(url, rules) is None, url
    for url in (PUBLIC, "https://cdn.example.org/", "https://evilcdn.example.org/"):
        why = refusal(url, rules)
        assert why is not None and "not among the media hosts" in why, url
    assert refusal("data:,x", rules) is None


def test_names_resolve_once_in_a_while_and_any_private_address_refuses() -> None:
    answers: dict[str, list[Address] | OSError] = {
        "images.example.com": [ipaddress.ip_address("93.184.215.14")],
        "rebind.example.com": [
            ipaddress.ip_address("93.184.215.14"),
            ipaddress.ip_address("10.0.0.7"),
        ],
        "nowhere.example.com": OSError("Name or service not known"),
    }
    asked: list[str] = []

    async def resolver(host: str) -> list[Address]:
        asked.append(host)
        answer = answers[host]
        if isinstance(answer, OSError):
            raise answer
        return answer

    async def scenario() -> None:
        media = MediaUrls(MediaRules(), resolver)
        assert await media.refusal("https://images.example.com/a.png") is None
        assert await media.refusal("https://IMAGES.example.com./b.png") is None
        assert asked == ["images.example.com"]  # kept
        why = await media.refusal("https://rebind.example.com/")
        assert why is not None and "10.0.0.7" in why
        why = await media.refusal("https://nowhere.example.com/")
        assert why is not None and "cannot be resolved" in why

        with pytest.raises(OpenAIError) as refused:
            await media.check(chat(image("https://images.example.com/a.png"),
                                   image("https://rebind.example.com/x.png")))  # fmt: skip
        assert refused.value.status_code == 400
        assert refused.value.code == "media_url_not_allowed"
        assert refused.value.param == "messages[1].content[2].image_url.url"

    asyncio.run(scenario())
