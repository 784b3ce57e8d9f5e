"""A real HTTP mock of an OpenAI-compatible upstream, with fault knobs.

Shared by the gateway's tests (in-process, via ``MockUpstream``) and by
``make bench`` (``python -m tests.mock_upstream --port 9100``); Django-free so
it can run as its own process. Knobs (see ``KNOBS``) come from a
``/scenario/k=v,k=v`` path prefix or ``X-Mock-<Knob>`` headers (header wins).
Each wire format is a handler building payloads, behind one generic route that
applies the knobs; add Anthropic/Cohere/Azure as sibling sections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import re
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Self
from urllib.parse import quote

from aiohttp import web
from openai.types import CreateEmbeddingResponse

JSON = dict[str, Any]
Frame = tuple[bytes, bool]  # an SSE frame and whether it carries content

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# Stream pieces keep their leading whitespace so that joined deltas == the text.
_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])")
POLL = 0.01  # how often in-flight requests check whether the client left


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))


def _flag(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "false", "no")


KNOBS: dict[str, Callable[[str], Any]] = {
    "latency": float,  # seconds before the first response byte
    "chunk_delay": float,  # seconds between SSE frames
    "status": int,  # reply with this error status
    "retry_after": int,  # Retry-After header on `status` replies
    "malformed": _flag,  # invalid JSON body / one invalid SSE data line
    "drop_after": int,  # abort the connection after N content chunks
    "words": int,  # reply with "word0 word1 ..." of this length
    "no_usage": _flag,  # never report usage
    "require_key": str,  # expected bearer token, else 401
}


def parse_knobs(spec: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """Merge path-prefix knobs with X-Mock-* headers; ValueError on bad input."""
    raw: dict[str, str] = {}
    for item in filter(None, spec.split(",")):
        name, _, value = item.partition("=")
        raw[name] = value
    for header, value in headers.items():
        if header.lower().startswith("x-mock-"):
            raw[header[7:].lower().replace("-", "_")] = value
    if unknown := sorted(set(raw) - set(KNOBS)):
        raise ValueError(f"unknown mock knob(s): {', '.join(unknown)}")
    return {name: KNOBS[name](value) for name, value in raw.items()}


def reply_pieces(prompt: str, words: int | None) -> list[str]:
    if words is not None:
        text = " ".join(f"word{i}" for i in range(words))
    else:  # whitespace is normalised so pieces join back to exactly the text
        text = ("Mock reply to: " + " ".join(prompt.split())[:60]).rstrip()
    return _PIECE_RE.findall(text)


def sse(payload: JSON | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


class _State:
    """Traffic record shared by the server loop and test threads."""

    def __init__(self, record: bool) -> None:
        self.record = record
        self.cond = threading.Condition()
        self.requests: list[JSON] = []
        self.events: list[JSON] = []
        self.counter = itertools.count(1)
        self.live: set[Exchange] = set()  # loop thread only

    def add(self, bucket: list[JSON], item: JSON) -> None:
        if self.record:  # the bench process must not grow without bound
            with self.cond:
                bucket.append(item)
                self.cond.notify_all()


STATE = web.AppKey("state", _State)


class Exchange:
    """One request: knobs, events and disconnect-aware sleeping and writing."""

    def __init__(self, request: web.Request, state: _State) -> None:
        self.request, self.state, self.n = request, state, next(state.counter)
        self.knobs: dict[str, Any] = {}
        self.gone = asyncio.get_running_loop().create_future()

    def event(self, kind: str, **extra: Any) -> None:
        entry = {"t": time.monotonic(), "kind": kind, "req": self.n, **extra}
        self.state.add(self.state.events, entry)

    def check_client(self) -> bool:
        """True (and the event recorded once) if the client has gone away."""
        transport = self.request.transport
        if not self.gone.done() and (transport is None or transport.is_closing()):
            self.gone.set_result(None)
            self.event("client_disconnected")
        return self.gone.done()

    async def sleep(self, seconds: float) -> bool:
        # One shared poller resolves `gone`, so 300 sleepers cost one timer each.
        if seconds > 0 and not self.check_client():
            await asyncio.wait({self.gone}, timeout=seconds)
        return not self.check_client()

    def abort(self) -> web.Response:
        # aiohttp swallows the ConnectionError when it then finishes the reply.
        if self.request.transport is not None:
            self.request.transport.abort()
        self.event("dropped")
        return web.Response(status=499)

    async def send(
        self, body: bytes, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> web.StreamResponse:
        """Write a whole JSON response now, so "first_byte"/"done" are accurate."""
        resp = web.Response(body=body, status=status, headers=headers, content_type="application/json")
        try:
            await resp.prepare(self.request)
            self.event("first_byte")
            await resp.write_eof()
            self.event("done")
        except ConnectionError:
            self.check_client()
        return resp

    async def reply(self, payload: JSON) -> web.StreamResponse:
        """A non-stream success, subject to the `drop_after=0`/`malformed` knobs."""
        if self.knobs.get("drop_after") == 0:
            return self.abort()
        if self.knobs.get("malformed"):
            return await self.send(json.dumps(payload).encode()[:40])
        return await self.send(json.dumps(payload).encode())

    async def stream(self, frames: list[Frame]) -> web.StreamResponse:
        """Write SSE frames one by one, each flushed, honouring the stream knobs."""
        delay, drop = self.knobs.get("chunk_delay", 0.0), self.knobs.get("drop_after")
        if self.knobs.get("malformed"):
            frames.insert(1, (b'data: {"choices": [{"delta": \n\n', False))
        last = max((i for i, (_, content) in enumerate(frames) if content), default=-1)
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        resp, sent = web.StreamResponse(headers=headers), 0
        try:
            await resp.prepare(self.request)
            self.event("first_byte")
            for i, (data, content) in enumerate(frames):
                if drop is not None and (i > last or (content and sent >= drop)):
                    self.abort()
                    return resp
                if i and not await self.sleep(delay):
                    return resp
                await resp.write(data)
                if content:
                    self.event("chunk", index=sent)
                    sent += 1
                if i == last:
                    self.event("last_chunk")
        except ConnectionError:
            self.check_client()
            return resp
        self.event("done")
        return resp


Handler = Callable[[Exchange, Any], Awaitable[web.StreamResponse]]
ErrorBody = Callable[[int, str], bytes]


def wire_route(handler: Handler, error: ErrorBody) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a wire-format handler with recording and the format-neutral knobs."""

    async def route(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        ex = Exchange(request, state)
        try:
            body: Any = json.loads(await request.read())
        except ValueError:
            body = None
        entry = {"path": request.path, "headers": dict(request.headers), "body": body}
        state.add(state.requests, entry)
        ex.event("request")
        state.live.add(ex)
        spec = request.match_info.get("knobs", "")
        try:
            try:
                k = ex.knobs = parse_knobs(spec, request.headers)
            except ValueError as exc:
                return await ex.send(error(400, str(exc)), 400)
            if not await ex.sleep(k.get("latency", 0.0)):
                return web.Response(status=499)
            auth = request.headers.get("Authorization")
            if "require_key" in k and auth != f"Bearer {k['require_key']}":
                # Like OpenAI, the refusal quotes part of the key it was given.
                presented = (auth or "").removeprefix("Bearer ")
                shown = f"{presented[:8]}{'*' * 12}{presented[-4:]}"
                return await ex.send(error(401, f"Incorrect API key provided: {shown}."), 401)
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


# --- OpenAI Chat Completions -------------------------------------------------

OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "mock-model")


def openai_text(content: Any) -> str:
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(str(p.get("text", "")) for p in parts)
    return content if isinstance(content, str) else ""  # None on tool calls


def openai_error(status: int, message: str) -> bytes:
    kind, code = {
        401: ("invalid_request_error", "invalid_api_key"),
        429: ("requests", "rate_limit_exceeded"),
    }.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    err = {"message": message, "type": kind, "param": None, "code": code}
    return json.dumps({"error": err}).encode()


async def openai_chat(ex: Exchange, body: Any) -> web.StreamResponse:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        return await ex.send(openai_error(400, "'messages' is required."), 400)
    if not all(isinstance(m, dict) for m in messages):
        return await ex.send(openai_error(400, "Messages must be objects."), 400)
    users = [m for m in messages if m.get("role") == "user"]
    prompt_text = openai_text(users[-1].get("content")) if users else ""
    pieces, finish = reply_pieces(prompt_text, ex.knobs.get("words")), "stop"
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int) and len(pieces) > limit:
        pieces, finish = pieces[: max(limit, 0)], "length"
    prompt = sum(count_tokens(openai_text(m.get("content"))) + 3 for m in messages)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": len(pieces),
        "total_tokens": prompt + len(pieces),
    }
    if ex.knobs.get("no_usage"):
        usage = {}
    base = {
        "id": f"chatcmpl-mock-{ex.n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or "mock-model"),
        "system_fingerprint": "fp_mock",
    }
    choice = {"index": 0, "logprobs": None, "finish_reason": finish}

    if not body.get("stream"):
        message = {"role": "assistant", "content": "".join(pieces), "refusal": None}
        out = {**base, "choices": [{**choice, "message": message}]}
        return await ex.reply({**out, "usage": usage} if usage else out)

    opts = body.get("stream_options")
    with_usage = bool(usage and isinstance(opts, dict) and opts.get("include_usage"))
    base["object"] = "chat.completion.chunk"
    if with_usage:
        base["usage"] = None  # as OpenAI: null on every chunk but the usage one

    def chunk(delta: JSON, reason: str | None = None) -> bytes:
        choices = [{**choice, "delta": delta, "finish_reason": reason}]
        return sse({**base, "choices": choices})

    frames = [(chunk({"role": "assistant", "content": ""}), False)]
    frames += [(chunk({"content": piece}), True) for piece in pieces]
    frames.append((chunk({}, finish), False))
    if with_usage:
        frames.append((sse({**base, "choices": [], "usage": usage}), False))
    frames.append((sse("[DONE]"), False))
    return await ex.stream(frames)


# --- OpenAI Embeddings -------------------------------------------------------

MOCK_EMBEDDING_DIMENSIONS = 8


def mock_embedding(item: str | list[int], dimensions: int | None = None) -> list[float]:
    """The mock's vector for one input: from its hash, in multiples of 1/128 so float32 holds it exactly."""
    size = dimensions or MOCK_EMBEDDING_DIMENSIONS
    return [(b - 128) / 128 for b in hashlib.shake_256(json.dumps(item).encode()).digest(size)]


def embedding_inputs(value: Any) -> list[str] | list[list[int]] | None:
    """OpenAI's `input` forms as a list of inputs; None if it is none of them."""
    if isinstance(value, str) and value:
        return [value]
    if not isinstance(value, list) or not value or len(value) > 2048:
        return None
    if all(isinstance(v, str) and v for v in value):
        return value
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [value]
    if all(isinstance(v, list) and v and all(isinstance(i, int) for i in v) for v in value):
        return value
    return None


async def openai_embeddings(ex: Exchange, body: Any) -> web.StreamResponse:
    inputs = embedding_inputs(body.get("input")) if isinstance(body, dict) else None
    if inputs is None or not isinstance(body.get("model"), str):
        return await ex.send(openai_error(400, "'model' and a valid 'input' are required."), 400)
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
        return await ex.send(openai_error(400, "'dimensions' must be a positive integer."), 400)
    vectors = [mock_embedding(item, dimensions) for item in inputs]
    tokens = sum(count_tokens(i) if isinstance(i, str) else len(i) for i in inputs)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    payload = {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    # The SDK's type is the float form (it decodes base64 itself), so the payload is checked before encoding.
    CreateEmbeddingResponse.model_validate(payload)
    if body.get("encoding_format") == "base64":
        for item in data:
            item["embedding"] = base64.b64encode(
                struct.pack(f"<{len(item['embedding'])}f", *item["embedding"])
            ).decode()
    if ex.knobs.get("no_usage"):
        del payload["usage"]
    return await ex.reply(payload)


async def openai_models(request: web.Request) -> web.Response:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in OPENAI_MODELS]
    return web.json_response({"object": "list", "data": data})


# --- Server ------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _watch_clients(app: web.Application) -> AsyncIterator[None]:
    async def poll() -> None:
        while True:
            await asyncio.sleep(POLL)
            for ex in list(app[STATE].live):
                ex.check_client()

    task = asyncio.create_task(poll())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def add_openai_routes(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/v1/chat/completions", wire_route(openai_chat, openai_error))
    app.router.add_post(f"{prefix}/v1/embeddings", wire_route(openai_embeddings, openai_error))
    app.router.add_get(f"{prefix}/v1/models", openai_models)


def _wire_formats() -> list[Callable[[web.Application, str], None]]:
    """Each provider's wire format adds its routes under a prefix ("" or a /scenario/{knobs} one)."""
    # Imported here, not at the top: each wire format imports this module.
    from tests import mock_anthropic, mock_azure, mock_cohere, mock_compatible

    return [
        add_openai_routes,
        mock_anthropic.add_anthropic_routes,
        mock_azure.add_azure_routes,
        mock_cohere.add_cohere_routes,
        mock_compatible.add_compatible_routes,
    ]


def build_app(state: _State) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.cleanup_ctx.append(_watch_clients)
    for prefix in ("", "/scenario/{knobs}"):
        for add_routes in _wire_formats():
            add_routes(app, prefix)
        app.router.add_get(f"{prefix}/_health", health)
    return app


async def start_server(state: _State, host: str, port: int) -> web.AppRunner:
    # Short shutdown timeout: stopping must not wait on deliberately slow replies.
    runner = web.AppRunner(build_app(state), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024, reuse_address=True).start()
    return runner


class MockUpstream:
    """The mock server on a daemon thread with its own event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, record: bool = True) -> None:
        self.host, self.port = host, port
        self._state = _State(record)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, **knobs: Any) -> str:
        parts = []
        for name, value in knobs.items():
            text = str(int(value)) if isinstance(value, bool) else str(value)
            if name not in KNOBS or "," in text or "/" in text:
                raise ValueError(f"bad mock knob {name}={text!r}")
            parts.append(f"{name}={quote(text, safe='')}")
        prefix = f"/scenario/{','.join(parts)}" if parts else ""
        return f"{self.url}{prefix}/v1"

    def start(self) -> Self:
        if self._loop is None:
            loop = self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="mock-upstream", daemon=True)
            self._thread.start()
            coro = start_server(self._state, self.host, self.port)
            self._runner = asyncio.run_coroutine_threadsafe(coro, loop).result()
            self.port = self._runner.addresses[0][1]
        return self

    def stop(self) -> None:
        loop, runner, self._loop, self._runner = self._loop, self._runner, None, None
        if loop is not None:
            if runner is not None:
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[JSON]:
        with self._state.cond:
            return list(self._state.requests)

    @property
    def events(self) -> list[JSON]:
        with self._state.cond:
            return list(self._state.events)

    def reset(self) -> None:
        with self._state.cond:
            self._state.requests.clear()
            self._state.events.clear()

    def wait_for(self, kind: str, timeout: float = 5.0, *, req: int | None = None) -> JSON:
        """The first recorded event of `kind` (for request `req` if given)."""
        deadline = time.monotonic() + timeout
        with self._state.cond:
            while True:
                for event in self._state.events:
                    if event["kind"] == kind and req in (None, event["req"]):
                        return event
                if (left := deadline - time.monotonic()) <= 0:
                    raise TimeoutError(f"no {kind!r} event within {timeout}s")
                self._state.cond.wait(left)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Mock OpenAI-compatible upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args(argv)

    up = MockUpstream(args.host, args.port, record=False).start()
    print(f"mock upstream listening on {up.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()  # serve until interrupted
    up.stop()


if __name__ == "__main__":
    # Run as the package's module, not as __main__: the wire formats import tests.mock_upstream, and a second
    # copy of it would hold other State keys than the app it builds.
    from tests import mock_upstream

    mock_upstream.main()
