"""The faults every adapter shares, for each provider kind: every deployment down, every deployment's breaker open."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import DeploymentFactory, ProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)

# How each kind's base URL sits on the mock upstream (whose knob-carrying URL ends in OpenAI's /v1).
KINDS = {
    "openai": lambda url: url,
    "compatible": lambda url: url,
    "azure": lambda url: url.removesuffix("/v1"),
    "anthropic": lambda url: url.removesuffix("/v1"),
    "cohere": lambda url: url.removesuffix("/v1"),
}
OPTIONS = {"azure": {"AZURE_OPENAI_API_VERSION": "2024-10-21"}}


def deployment(kind: str, upstream, model: str, **knobs):
    provider = ProviderFactory(
        kind=kind, base_url=KINDS[kind](upstream.base_url(**knobs)), options=OPTIONS.get(kind, {})
    )
    provider.breaker_failures = 2
    provider.breaker_open_seconds = 60
    provider.save()
    return DeploymentFactory(model_name=model, provider=provider, upstream_model=model)


def ask(gateway, api_key: str, model: str, stream: bool) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_deployment_down_then_every_breaker_open(gateway, api_key, upstream, kind, stream):
    model = f"{kind}-down-{'s' if stream else 'j'}"
    deployment(kind, upstream, model, status=503)
    deployment(kind, upstream, model, status=500)

    down = ask(gateway, api_key, model, stream)
    assert down.status_code == 502, down.text
    assert down.json()["error"]["type"] == "upstream_error"
    tried = len(upstream.requests)
    assert tried >= 2  # both deployments, each failing: now both breakers are open

    while True:  # a round more may be needed for the second failure of each
        answer = ask(gateway, api_key, model, stream)
        if answer.status_code == 503:
            break
        assert answer.status_code == 502 and len(upstream.requests) < 20, answer.text
    error = answer.json()["error"]
    assert error["code"] == "model_unavailable" and model in error["message"]
    assert int(answer.headers["retry-after"]) >= 1
    calls = len(upstream.requests)
    assert ask(gateway, api_key, model, stream).status_code == 503
    assert len(upstream.requests) == calls  # open breakers fail fast: nothing reached the upstream
