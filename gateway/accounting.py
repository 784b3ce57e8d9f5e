"""Step 7: what a finished request leaves behind, exactly once: its ledger row and its access log line."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal

from gateway import lifecycle
from gateway.admission import budgets, rate_limits
from gateway.call import CHAT, CLIENT_CLOSED, EMBEDDINGS, ENDPOINTS, Call
from gateway.schemas import GreenGateFigures, Usage, message_text
from ledger import estimates
from ledger.estimates import CostSource, EnergySource
from ledger.models import LedgerEntry
from ledger.writer import ledger_writer
from providers.adapters.registry import spec_for
from providers.tokens import count_messages, count_text, embedding_input_tokens, encoding_for
from providers.types import Target

# Sources whose energy and carbon figures are estimates worth showing (the others are zeros with a reason).
ESTIMATED = frozenset({EnergySource.ECOLOGITS, EnergySource.PARAMETERS, EnergySource.DEFAULT})

logger = logging.getLogger("greengate.requests")


@asynccontextmanager
async def recorded(call: Call) -> AsyncIterator[Call]:
    """Whatever happens inside (an answer, an error, a client leaving, a shutdown), the call is accounted once."""
    try:
        yield call
    finally:
        account(call)


def processed(call: Call) -> bool:
    """Whether a provider worked on the call: it answered, was still working when the client left, or
    streamed something before failing. Only such calls are billed; refusals and skipped breakers cost 0."""
    return bool(call.output) or any(a.outcome in ("ok", "cancelled") for a in call.attempts)


def final_usage(call: Call) -> tuple[Usage, str]:
    """The upstream's usage, else GreenGate's own count of what was asked and sent; and the encoding counted with."""
    if call.usage is not None:
        return call.usage, ""
    if not processed(call):
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
        entry.energy_source = EnergySource.FAILED if call.attempts else EnergySource.NONE
        entry.cost_source = CostSource.FAILED if call.attempts else CostSource.NONE
    call.entry = entry
    ledger_writer.record(entry)
    rate_limits.settle_later(call, entry.prompt_tokens + entry.completion_tokens)
    budgets.settle_later(call, entry.cost_usd, processed(call))
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
        replay_of=call.replay_of,
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
    try:
        _estimate(call, usage, entry)
    except Exception:  # noqa: BLE001 - a failed estimate is flagged in the row, never a lost row
        logger.exception("ledger estimate failed")
        entry.energy_source, entry.cost_source = EnergySource.FAILED, CostSource.FAILED
    return entry


def _estimate(call: Call, usage: Usage, entry: LedgerEntry) -> None:
    """Energy, carbon and cost of what the provider was asked and sent (partial streams included)."""
    entry.estimate_method = estimates.ESTIMATE_METHOD
    target = call.target
    if target is None or not processed(call):
        entry.energy_source, entry.cost_source, entry.cost_usd = EnergySource.NONE, CostSource.NONE, Decimal(0)
        return
    spec = spec_for(target.kind)
    names = price_names(target, call.model)
    entry.electricity_zone = target.electricity_zone
    if call.endpoint == EMBEDDINGS:
        entry.energy_source = EnergySource.NOT_ESTIMATED  # ecologits models text generation only
    else:
        profile = estimates.energy_profile(spec.ecologits_provider, names, target.parameters_billions)
        impact = estimates.impact(
            profile,
            output_tokens=max(usage.output_tokens, 0),
            latency_seconds=entry.latency_ms / 1000,
            zone=target.electricity_zone,
        )
        entry.energy_source = impact.source
        entry.energy_joules = impact.energy_joules
        entry.energy_joules_min = impact.energy_joules_min
        entry.energy_joules_max = impact.energy_joules_max
        entry.co2e_grams = impact.co2e_grams
        entry.co2e_grams_min = impact.co2e_grams_min
        entry.co2e_grams_max = impact.co2e_grams_max
    price = price_of(target, usage, names, call.started_at)
    entry.cost_source, entry.cost_usd = price.source, price.usd


def price_names(target: Target, model: str) -> tuple[str, ...]:
    # Azure's upstream model is a deployment name; the public name is often the model's own.
    return tuple(dict.fromkeys(n for n in (target.upstream_model, model) if n))


def price_of(target: Target, usage: Usage, names: tuple[str, ...], when: datetime) -> estimates.Cost:
    """What `usage` costs on `target`: its negotiated price at `when`, else genai-prices' (budgets use it too)."""
    spec = spec_for(target.kind)
    return estimates.cost(
        estimates.TokenCounts(
            input=usage.input_tokens,
            output=usage.output_tokens,
            cached_input=usage.cached_input_tokens,
            cache_write=usage.cache_write_tokens,
        ),
        price_provider=spec.price_provider,
        # A kind without a genai-prices id (an OpenAI-compatible server) is found by its URL, if genai-prices
        # knows it (OpenRouter, Groq, ...).
        api_url=target.base_url if spec.price_provider is None else "",
        model_names=names,
        when=when,
        overrides=target.price_overrides,
    )


def figures(call: Call) -> GreenGateFigures | None:
    """The accounted request's estimates for the client, exactly as its ledger row holds them."""
    entry = call.entry
    if entry is None:
        return None
    shown = entry.energy_source in ESTIMATED
    return GreenGateFigures(
        energy_joules=entry.energy_joules if shown else None,
        energy_joules_min=entry.energy_joules_min if shown else None,
        energy_joules_max=entry.energy_joules_max if shown else None,
        co2e_grams=entry.co2e_grams if shown else None,
        co2e_grams_min=entry.co2e_grams_min if shown else None,
        co2e_grams_max=entry.co2e_grams_max if shown else None,
        cost_usd=entry.cost_usd,
        energy_source=entry.energy_source,
        cost_source=entry.cost_source,
        method=entry.estimate_method,
    )


def figure_headers(call: Call) -> list[tuple[bytes, bytes]]:
    """x-greengate-* headers for a JSON answer; a figure that was not estimated is left out, never sent as 0."""
    shown = figures(call)
    if shown is None:
        return []
    headers = []
    if shown.energy_joules is not None and shown.co2e_grams is not None:
        # repr: the shortest text that reads back as the very float the row holds.
        headers.append((b"x-greengate-energy-joules", repr(shown.energy_joules).encode()))
        headers.append((b"x-greengate-co2e-grams", repr(shown.co2e_grams).encode()))
    if shown.cost_usd is not None:
        headers.append((b"x-greengate-cost-usd", f"{shown.cost_usd:f}".encode()))
    return headers


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
