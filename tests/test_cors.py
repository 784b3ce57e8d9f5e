"""Browser apps on a configured origin may call the API; others get no CORS grant."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningGateway, start_gateway, stop_gateway, wait_for_quiet_ledger

pytestmark = pytest.mark.django_db(transaction=True)

APP = "https://app.example"


@pytest.fixture(scope="module")
def cors_server(django_db_setup, django_db_blocker) -> Iterator[RunningGateway]:
    gateway = start_gateway({"CORS_ALLOWED_ORIGINS": APP}, log_name="cors")
    yield gateway
    stop_gateway(gateway)


@pytest.fixture
def cors_gateway(cors_server: RunningGateway, transactional_db) -> Iterator[RunningGateway]:
    yield cors_server
    wait_for_quiet_ledger()


def test_a_preflight_from_a_configured_origin_is_granted(cors_gateway):
    response = httpx.options(
        f"{cors_gateway.url}/v1/chat/completions",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
    assert response.headers["vary"] == "Origin"


def test_responses_to_a_configured_origin_carry_the_grant_and_readable_headers(cors_gateway, api_key):
    response = httpx.post(
        f"{cors_gateway.url}/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Origin": APP, "Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 404
    assert response.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in response.headers["access-control-expose-headers"]


def test_another_origin_gets_no_grant(cors_gateway, api_key):
    preflight = httpx.options(
        f"{cors_gateway.url}/v1/models",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 403 and preflight.json()["error"]["code"] == "cors_denied"
    response = httpx.get(
        f"{cors_gateway.url}/v1/models",
        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
