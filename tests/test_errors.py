"""Error mapping: upstream failures to client statuses, and anything unexpected to an OpenAI-shaped 500."""

from __future__ import annotations

import aiohttp
import httpx
import pytest

from gateway.errors import from_provider_error
from gateway.transport.views import openai_exception_handler
from providers.adapters import errors
from providers.types import ProviderError


def test_an_upstream_timeout_is_a_504_and_other_failures_are_502():
    assert from_provider_error(ProviderError(504, "slow", retryable=True, code="upstream_timeout")).status == 504
    assert from_provider_error(ProviderError(502, "down", retryable=True, code="upstream_unavailable")).status == 502


def test_an_upstream_rejection_of_the_request_is_a_400():
    error = from_provider_error(
        ProviderError(400, "bad tool schema", retryable=False, code="upstream_rejected_request")
    )
    assert (error.status, error.type, error.message) == (400, "invalid_request_error", "bad tool schema")


def test_retry_after_is_passed_on():
    error = from_provider_error(
        ProviderError(502, "busy", retryable=True, retry_after=2.6, code="upstream_rate_limited")
    )
    assert error.headers == {"Retry-After": "3"}


@pytest.mark.parametrize(
    ("status", "retryable", "client_status"),
    [
        (400, False, 400),
        (422, False, 400),
        (401, False, 502),
        (404, False, 404),
        (429, True, 502),
        (500, True, 502),
        (503, True, 502),
        (501, False, 502),
    ],
)
def test_upstream_statuses_map_to_retryable_errors(status, retryable, client_status):
    error = errors.from_status(status, b'{"error": {"message": "nope"}}', httpx.Headers(), "p")
    assert (error.retryable, error.status) == (retryable, client_status)


def _wrapped(cause: BaseException) -> httpx.HTTPError:
    # httpx-aiohttp raises httpx errors from aiohttp ones, and maps a refused connection to ConnectTimeout.
    try:
        raise httpx.ConnectTimeout("mapped") from cause
    except httpx.HTTPError as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (_wrapped(aiohttp.SocketTimeoutError()), "upstream_timeout"),
        (_wrapped(aiohttp.ServerDisconnectedError()), "upstream_unavailable"),
        (_wrapped(aiohttp.ClientConnectionError()), "upstream_unavailable"),
        (TimeoutError(), "upstream_timeout"),
        (httpx.ReadTimeout("slow"), "upstream_timeout"),
        (aiohttp.ClientPayloadError(), "upstream_unavailable"),
    ],
)
def test_transport_failures_are_judged_by_their_root_cause(exc, code):
    assert errors.from_transport(exc, "p").code == code


def test_an_unexpected_exception_in_a_view_becomes_an_openai_shaped_500():
    response = openai_exception_handler(RuntimeError("boom"), {})
    assert response.status_code == 500
    assert response.data["error"]["type"] == "server_error"
    assert "boom" not in response.data["error"]["message"]
