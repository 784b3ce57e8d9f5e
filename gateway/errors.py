"""OpenAI-shaped errors: {"error": {"message", "type", "param", "code"}} with the right status."""

from __future__ import annotations

from typing import Any

from gateway.schemas import ErrorBody, ErrorDetail, encoder
from providers.types import ProviderError


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def encoded(self) -> bytes:
        return encoder.encode(ErrorBody(ErrorDetail(self.message, self.type, self.param, self.code)))


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def invalid_api_key(message: str = "Incorrect API key provided.") -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key")


def model_not_found(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def unknown_url(method: str, path: str) -> GatewayError:
    shown = path if len(path) <= 200 else path[:200] + "..."
    return GatewayError(
        404,
        f"Unknown request URL: {method} {shown}. Please check the URL for typos.",
        code="unknown_url",
    )


def method_not_allowed(method: str, allowed: list[str]) -> GatewayError:
    return GatewayError(
        405,
        f"Method {method} is not allowed here; use {' or '.join(allowed)}.",
        code="method_not_allowed",
        headers={"Allow": ", ".join(allowed)},
    )


def request_too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body is larger than the limit of {limit} bytes.", code="request_too_large")


def from_provider_error(exc: ProviderError) -> GatewayError:
    """400 when the upstream judged the request itself bad, 504 for a timeout, 502 for any other failure."""
    if exc.status in (400, 404):
        return GatewayError(exc.status, exc.message, code=exc.code)
    status = 504 if exc.code == "upstream_timeout" else 502
    headers = {"Retry-After": str(round(exc.retry_after))} if exc.retry_after else {}
    return GatewayError(status, exc.message, type="upstream_error", code=exc.code, headers=headers)


def shutting_down() -> GatewayError:
    return GatewayError(
        503, "The server is shutting down; retry the request.", type="server_error", code="server_shutting_down"
    )


def internal_error() -> GatewayError:
    return GatewayError(500, "GreenGate hit an internal error; it has been logged.", type="server_error")
