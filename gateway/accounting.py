"""Step 7: what a finished request leaves behind, exactly once: its ledger row and its access log line."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway import lifecycle
from gateway.call import CHAT, CLIENT_CLOSED, ENDPOINTS, Call
from gateway.schemas import Usage, message_text
from ledger.models import LedgerEntry
from ledger.writer import ledger_writer
from providers.tokens import count_messages, count_text, embedding_input_tokens, encoding_for

logger = logging.getLogger("greengate.requests")


@asynccontextmanager
async def recorded(call: Call) -> AsyncIterator[Call]:
    """Whatever happens inside (an answer, an error, a client leaving, a shutdown), the call is accounted once."""
    try:
        yield call
    finally:
        account(call)


def final_usage(call: Call) -> tuple[Usage, str]:
    """The upstream's usage, else GreenGate's own count of what was asked and sent; and the encoding counted with."""
    if call.usage is not None:
        return call.usage, ""
    # Only what a provider actually processed is billed: a call it accepted (answered, or still working when
    # the client left), or one that streamed something before failing. Refusals and skipped breakers cost 0.
    processed = bool(call.output) or any(a.outcome in ("ok", "cancelled") for a in call.attempts)
    if not processed:
        return Usage(), ""
    if call.embedding is not None:
        # Embeddings generate nothing: the input is the whole bill.
        model = call.target.upstream_model if call.target else call.embedding.model
        return Usage.of(input=embedding_input_tokens(call.embedding.inputs, model).tokens, output=0), (
            encoding_for(model)
        )
    if call.chat is None:
        return Usage(), ""
    model = call.target.upstream_model if call.target else call.chat.model
    prompt = count_messages((message_text(m) for m in call.chat.messages), model)
    completion = count_text("".join(call.output), model)
    return Usage.of(input=prompt.tokens, output=completion.tokens), prompt.encoding


def account(call: Call) -> None:
    """Record the call if nothing has yet; never raises, since it runs on every exit path."""
    if call.accounted:
        return
    call.accounted = True
    if call.status is None:
        # Cut off before an answer: by a shutdown's grace running out, or by the client leaving.
        if lifecycle.draining:
            call.fail(503, "server_shutting_down")
        else:
            call.fail(CLIENT_CLOSED, "client_disconnected")
    try:
        entry = _entry(call)
    except Exception:  # noqa: BLE001 - the row must be written even if a detail of it cannot be worked out
        logger.exception("ledger row incomplete")
        entry = _bare_entry(call)
    ledger_writer.record(entry)
    _log(call, entry)


def _bare_entry(call: Call) -> LedgerEntry:
    return LedgerEntry(
        request_id=call.request_id,
        client_request_id=call.client_request_id,
        created_at=call.started_at,
        endpoint=call.endpoint,
        status_code=call.status or 500,
        error_code=call.error_code,
        latency_ms=round((time.monotonic() - call.started) * 1000),
        tenant_id=call.key.tenant_id if call.key else None,
        api_key_id=call.key.key_id if call.key else None,
    )


def _bounded(count: int) -> int:
    return min(max(int(count), 0), 2**31 - 1)


def _entry(call: Call) -> LedgerEntry:
    usage, encoding = final_usage(call)
    entry = _bare_entry(call)
    entry.stream = call.stream
    entry.model = call.model
    if call.target is not None:
        entry.provider = call.target.provider_name
        entry.upstream_model = call.target.upstream_model
    entry.cache_status = call.cache_status
    entry.attempts = sum(1 for a in call.attempts if a.outcome != "breaker_open")
    entry.providers_tried = " ".join(f"{a.provider}:{a.outcome}" for a in call.attempts)
    # Bounded again here: whatever happened upstream, the row must fit its columns, or it is lost.
    entry.prompt_tokens = _bounded(usage.input_tokens)
    entry.completion_tokens = _bounded(usage.output_tokens)
    entry.cached_input_tokens = _bounded(usage.cached_input_tokens)
    entry.cache_write_tokens = _bounded(usage.cache_write_tokens)
    entry.reasoning_tokens = _bounded(usage.reasoning_tokens)
    entry.usage_estimated = bool(encoding)
    entry.token_encoding = encoding
    if call.first_token_at is not None:
        entry.ttft_ms = round((call.first_token_at - call.started) * 1000)
    return entry


def _log(call: Call, entry: LedgerEntry) -> None:
    logger.info(
        "chat completion" if call.endpoint == CHAT else "embeddings",
        extra={
            "status": entry.status_code,
            "error_code": entry.error_code or None,
            "tenant": call.key.tenant_slug if call.key else None,
            "client_request_id": entry.client_request_id or None,
            "model": entry.model or None,
            "provider": entry.provider or None,
            "attempts": entry.providers_tried or None,
            "stream": entry.stream,
            "prompt_tokens": entry.prompt_tokens,
            "completion_tokens": entry.completion_tokens,
            "latency_ms": entry.latency_ms,
            "ttft_ms": entry.ttft_ms,
        },
    )


def account_refused(request_id: str, path: str, status: int, code: str, *, client_request_id: str = "") -> None:
    """A pipeline request the server refused before GreenGate read it (too large, too slow) still gets its row."""
    endpoint = ENDPOINTS.get(path)
    if endpoint is not None:
        call = Call(request_id=request_id, client_request_id=client_request_id, endpoint=endpoint)
        call.fail(status, code)
        account(call)
