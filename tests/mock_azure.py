"""Azure OpenAI's wire format on the mock upstream.

POST {prefix}/openai/deployments/{deployment}/chat/completions?api-version=...: OpenAI's payloads (built by
``openai_chat``) with Azure's additions: ``prompt_filter_results``, per-choice ``content_filter_results``, and a
first stream chunk with empty ``choices`` (and empty ``id``/``object``) carrying the prompt's filter results.
Azure-specific behaviour:
- no ``api-version`` query parameter: 404 ``{"error": {"code": "404", "message": "Resource not found"}}``;
- ``require_key`` checks the ``api-key`` header (Azure's), not a bearer token;
- an api-version older than 2024-09-01 refuses ``stream_options`` with 400, as Azure does;
- a user message containing ``[filter-prompt]`` is refused with Azure's 400 ``content_filter`` error, one
  containing ``[filter-output]`` ends with ``finish_reason: "content_filter"``.
POST {prefix}/openai/deployments/{deployment}/embeddings answers as ``openai_embeddings`` does, with the same
checks. Requests are recorded with their query string (``requests[i]["query"]``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.mock_upstream import (
    STATE,
    ErrorBody,
    Exchange,
    Frame,
    Handler,
    _State,
    openai_chat,
    openai_embeddings,
    openai_text,
    parse_knobs,
    sse,
)

JSON = dict[str, Any]
STREAM_OPTIONS_SINCE = "2024-09-01"
FILTER_PROMPT, FILTER_OUTPUT = "[filter-prompt]", "[filter-output]"
_CATEGORIES = ("hate", "self_harm", "sexual", "violence")


def state_of(app: web.Application) -> _State:
    # `python -m tests.mock_upstream` builds the app in the module's __main__ copy, whose STATE key is not the one
    # imported here; the app holds one _State either way.
    if STATE in app:
        return app[STATE]
    return next(value for value in app.values() if type(value).__name__ == "_State")


def knob_route(
    handler: Handler,
    error: ErrorBody,
    *,
    exchange: type[Exchange] = Exchange,
    refuse: Callable[[Exchange], Awaitable[web.StreamResponse | None]] | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``wire_route`` with the hooks another format needs: its own Exchange class and its own checks
    (credentials, URL) in place of the bearer-token check, which is OpenAI's."""

    async def route(request: web.Request) -> web.StreamResponse:
        state = state_of(request.app)
        ex = exchange(request, state)
        try:
            body: Any = json.loads(await request.read())
        except ValueError:
            body = None
        entry = {"path": request.path, "query": dict(request.query), "headers": dict(request.headers), "body": body}
        state.add(state.requests, entry)
        ex.event("request")
        state.live.add(ex)
        try:
            try:
                k = ex.knobs = parse_knobs(request.match_info.get("knobs", ""), request.headers)
            except ValueError as exc:
                return await ex.send(error(400, str(exc)), 400)
            if not await ex.sleep(k.get("latency", 0.0)):
                return web.Response(status=499)
            if refuse is not None and (refusal := await refuse(ex)) is not None:
                return refusal
            if "status" in k:
                retry = k.get("retry_after")
                extra = {} if retry is None else {"Retry-After": str(retry)}
                return await ex.send(error(k["status"], "Mock failure."), k["status"], extra)
            if body is None:
                return await ex.send(error(400, "Request body is not valid JSON."), 400)
            return await handler(ex, body)
        finally:
            state.live.discard(ex)

    return route


# --- Azure OpenAI ------------------------------------------------------------


def azure_error(status: int, message: str) -> bytes:
    # Azure's gateway errors carry the status as a string code and no type.
    code = {500: "InternalServerError"}.get(status, str(status))
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def filter_results(*, filtered: bool = False) -> JSON:
    results: JSON = {name: {"filtered": False, "severity": "safe"} for name in _CATEGORIES}
    if filtered:
        results["violence"] = {"filtered": True, "severity": "high"}
    return results


def prompt_filter_results() -> list[JSON]:
    results = filter_results()
    results["jailbreak"] = {"filtered": False, "detected": False}
    return [{"prompt_index": 0, "content_filter_results": results}]


def _prompt(body: JSON) -> str:
    users = [m for m in body.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"]
    return openai_text(users[-1].get("content")) if users else ""


class AzureExchange(Exchange):
    """Adds Azure's content-filter fields to what ``openai_chat`` answers."""

    filter_output = False

    def _choice(self, choice: JSON) -> JSON:
        if self.filter_output and choice.get("finish_reason") is not None:
            choice["finish_reason"] = "content_filter"
            return {**choice, "content_filter_results": filter_results(filtered=True)}
        return {**choice, "content_filter_results": filter_results() if choice.get("delta", True) else {}}

    async def reply(self, payload: JSON) -> web.StreamResponse:
        payload = {**payload, "prompt_filter_results": prompt_filter_results()}
        payload["choices"] = [self._choice(c) for c in payload["choices"]]
        return await super().reply(payload)

    async def stream(self, frames: list[Frame]) -> web.StreamResponse:
        annotation = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
        out: list[Frame] = [(sse({**annotation, "prompt_filter_results": prompt_filter_results()}), False)]
        for data, content in frames:
            payload = data.decode()[len("data: ") :].strip()
            if payload == "[DONE]":
                out.append((data, content))
                continue
            chunk = json.loads(payload)
            chunk["choices"] = [self._choice(c) for c in chunk["choices"]]
            out.append((sse(chunk), content))
        return await super().stream(out)


async def azure_checks(ex: Exchange) -> web.StreamResponse | None:
    if "api-version" not in ex.request.query:
        return await ex.send(azure_error(404, "Resource not found"), 404)
    expected = ex.knobs.get("require_key")
    if expected is not None and ex.request.headers.get("api-key") != expected:
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
            "key for an active subscription and use a correct regional API endpoint for your resource."
        )
        return await ex.send(azure_error(401, message), 401)
    return None


async def azure_chat(ex: Exchange, body: Any) -> web.StreamResponse:
    assert isinstance(ex, AzureExchange)
    if not isinstance(body, dict):
        return await openai_chat(ex, body)
    version = ex.request.query["api-version"]
    if "stream_options" in body and version[:10] < STREAM_OPTIONS_SINCE:
        refusal = {"message": "Unrecognized request argument supplied: stream_options", "type": "invalid_request_error"}
        return await ex.send(json.dumps({"error": {**refusal, "param": None, "code": None}}).encode(), 400)
    prompt = _prompt(body)
    if FILTER_PROMPT in prompt:
        error = {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management "
            "policy. Please modify your prompt and retry.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": filter_results(filtered=True),
            },
        }
        return await ex.send(json.dumps({"error": error}).encode(), 400)
    ex.filter_output = FILTER_OUTPUT in prompt
    ex.event("azure", deployment=ex.request.match_info["deployment"], api_version=version)
    return await openai_chat(ex, body)


def add_azure_routes(app: web.Application, prefix: str) -> None:
    path = f"{prefix}/openai/deployments/{{deployment}}/chat/completions"
    app.router.add_post(path, knob_route(azure_chat, azure_error, exchange=AzureExchange, refuse=azure_checks))
    # Embeddings: OpenAI's payloads as they are (Azure adds no content-filter fields to them).
    embeddings = f"{prefix}/openai/deployments/{{deployment}}/embeddings"
    app.router.add_post(embeddings, knob_route(openai_embeddings, azure_error, refuse=azure_checks))
