"""Energy, carbon and cost per request: equal to ecologits and genai-prices called directly, in the ledger row,
and shown to the client exactly as the row holds them (headers of a JSON answer, `usage.greengate` of a stream)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import genai_prices
import httpx
import openai
import pytest
from ecologits.impacts.llm import compute_llm_impacts
from ecologits.tracers.utils import PROVIDER_CONFIG_MAP, llm_impacts
from ecologits.utils.range_value import RangeValue
from genai_prices import update_prices
from openai.types.chat import ChatCompletionChunk

from ledger import estimates
from ledger.estimates import (
    DEFAULT_PARAMETERS,
    FALLBACK_DATACENTER,
    CostSource,
    EnergySource,
    PriceOverrideRule,
    TokenCounts,
    TokenPrices,
)
from ledger.models import LedgerEntry, PriceOverride
from providers.adapters.registry import spec_for
from tests.factories import DeploymentFactory, ProviderFactory
from tests.mock_upstream import MockUpstream

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def bounds(value: float | RangeValue) -> tuple[float, float]:
    return (value.min, value.max) if isinstance(value, RangeValue) else (value, value)


def joules_and_grams(impacts: Any) -> dict[str, float]:
    """ecologits' output in the ledger's units: kWh -> J, kgCO2e -> g, central value = the range's mean."""
    e_min, e_max = bounds(impacts.energy.value)
    g_min, g_max = bounds(impacts.gwp.value)
    return {
        "energy_joules": (e_min + e_max) / 2 * 3.6e6,
        "energy_joules_min": e_min * 3.6e6,
        "energy_joules_max": e_max * 3.6e6,
        "co2e_grams": (g_min + g_max) / 2 * 1000,
        "co2e_grams_min": g_min * 1000,
        "co2e_grams_max": g_max * 1000,
    }


def figures_of(impact: estimates.Impact | LedgerEntry) -> dict[str, float]:
    return {
        name: getattr(impact, name)
        for name in (
            "energy_joules",
            "energy_joules_min",
            "energy_joules_max",
            "co2e_grams",
            "co2e_grams_min",
            "co2e_grams_max",
        )
    }


def ours(kind: str, names: tuple[str, ...], tokens: int, latency: float, zone: str, params: float | None = None):
    profile = estimates.energy_profile(spec_for(kind).ecologits_provider, names, params)
    return estimates.impact(profile, output_tokens=tokens, latency_seconds=latency, zone=zone)


def direct_price(provider_id: str, model: str, tokens: TokenCounts) -> Decimal:
    usage = genai_prices.Usage(
        input_tokens=tokens.input,
        cache_read_tokens=tokens.cached_input,
        cache_write_tokens=tokens.cache_write,
        output_tokens=tokens.output,
    )
    price = genai_prices.calc_price(usage, model, provider_id=provider_id, genai_request_timestamp=NOW)
    return price.total_price.quantize(estimates.COST_QUANTUM)


def our_price(kind: str, names: tuple[str, ...], tokens: TokenCounts, **kwargs: Any) -> estimates.Cost:
    return estimates.cost(
        tokens, price_provider=spec_for(kind).price_provider, api_url="", model_names=names, when=NOW, **kwargs
    )


# --- Energy and carbon: equal to ecologits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "model", "zone"),
    [
        ("openai", "gpt-4o-mini", "WOR"),
        ("openai", "gpt-4.1", "USA"),
        ("anthropic", "claude-haiku-4-5", "FRA"),  # ecologits gives Anthropic a PUE range
        ("cohere", "command-r-08-2024", "SWE"),  # a single size: no range at all
    ],
)
@pytest.mark.parametrize(("tokens", "latency"), [(1, 0.2), (350, 4.0), (4000, 1.5)])
def test_energy_and_carbon_equal_ecologits_called_directly(kind, model, zone, tokens, latency):
    impact = ours(kind, (model,), tokens, latency, zone)

    assert impact.source == EnergySource.ECOLOGITS
    assert figures_of(impact) == pytest.approx(joules_and_grams(llm_impacts(kind, model, tokens, latency, zone)))
    assert impact.energy_joules_min <= impact.energy_joules <= impact.energy_joules_max


def test_azure_deployments_are_estimated_as_openai_models_by_deployment_or_public_name():
    # Azure's upstream model is a deployment name; ecologits lists gpt-35-turbo (Azure's spelling) too.
    by_public_name = ours("azure", ("prod-4o-deployment", "gpt-4o"), 200, 2.0, "WOR")
    by_azure_name = ours("azure", ("gpt-35-turbo",), 200, 2.0, "WOR")

    assert spec_for("azure").ecologits_provider == "openai"
    assert by_public_name.source == by_azure_name.source == EnergySource.ECOLOGITS
    assert figures_of(by_public_name) == pytest.approx(
        joules_and_grams(llm_impacts("openai", "gpt-4o", 200, 2.0, "WOR"))
    )
    assert figures_of(by_azure_name) == pytest.approx(
        joules_and_grams(llm_impacts("openai", "gpt-35-turbo", 200, 2.0, "WOR"))
    )


def per_parameter(size: float | RangeValue, pue: float | RangeValue, tokens: int, latency: float, zone: str):
    """ecologits' own per-parameter model, called directly, with the world's (or a zone's) mix."""
    from ecologits.electricity_mix_repository import electricity_mixes

    mix = electricity_mixes.find_electricity_mix(zone)
    return compute_llm_impacts(
        model_active_parameter_count=size,
        model_total_parameter_count=size,
        output_token_count=tokens,
        request_latency=latency,
        if_electricity_mix_adpe=mix.adpe,
        if_electricity_mix_pe=mix.pe,
        if_electricity_mix_gwp=mix.gwp,
        if_electricity_mix_wue=mix.wue,
        datacenter_pue=pue,
        datacenter_wue=0.5,
    )


def test_an_unknown_model_is_estimated_from_its_parameter_count_and_flagged():
    impact = ours("compatible", ("my-org/llama-ft",), 500, 3.0, "FRA", params=8.0)

    assert impact.source == EnergySource.PARAMETERS
    expected = per_parameter(8.0, FALLBACK_DATACENTER.datacenter_pue, 500, 3.0, "FRA")
    assert figures_of(impact) == pytest.approx(joules_and_grams(expected))


def test_an_unknown_model_without_a_size_gets_the_default_class_and_is_flagged():
    impact = ours("mock", ("greengate-demo",), 500, 3.0, "WOR")

    assert impact.source == EnergySource.DEFAULT
    expected = per_parameter(DEFAULT_PARAMETERS, FALLBACK_DATACENTER.datacenter_pue, 500, 3.0, "WOR")
    assert figures_of(impact) == pytest.approx(joules_and_grams(expected))
    assert impact.energy_joules_min < impact.energy_joules_max  # a size range is an energy range


def test_an_unknown_model_of_a_known_provider_keeps_that_providers_datacenter():
    impact = ours("openai", ("gpt-test",), 100, 1.0, "WOR", params=20.0)

    assert impact.source == EnergySource.PARAMETERS
    expected = per_parameter(20.0, PROVIDER_CONFIG_MAP["openai"].datacenter_pue, 100, 1.0, "WOR")
    assert figures_of(impact) == pytest.approx(joules_and_grams(expected))


def test_energy_counts_output_tokens_only_as_ecologits_does():
    # The same answer after a short or a long prompt: the estimate takes no prompt size at all.
    assert ours("openai", ("gpt-4o-mini",), 0, 0.0, "WOR").energy_joules == 0
    assert ours("openai", ("gpt-4o-mini",), 300, 2.0, "WOR").energy_joules > 0


def test_the_carbon_follows_the_providers_electricity_zone():
    swedish = ours("openai", ("gpt-4o-mini",), 300, 2.0, "SWE")
    polish = ours("openai", ("gpt-4o-mini",), 300, 2.0, "POL")

    assert swedish.energy_joules == polish.energy_joules
    assert swedish.co2e_grams < polish.co2e_grams


def test_model_lookups_are_cached_per_provider_and_model():
    first = estimates.energy_profile("openai", ("gpt-4o-mini",), None)
    assert estimates.energy_profile("openai", ("gpt-4o-mini",), None) is first
    model = estimates.price_model("openai", "", ("gpt-4o-mini",))
    assert model is not None and estimates.price_model("openai", "", ("gpt-4o-mini",)) is model


# --- Cost: equal to genai-prices -------------------------------------------------------------------------------

CACHED = TokenCounts(input=12_000, output=800, cached_input=9_000, cache_write=1_000)


@pytest.mark.parametrize(
    ("kind", "provider_id", "model"),
    [
        ("openai", "openai", "gpt-4o-mini"),
        ("openai", "openai", "gpt-4.1"),
        ("anthropic", "anthropic", "claude-haiku-4-5"),  # cache reads and writes at their own rates
        ("anthropic", "anthropic", "claude-sonnet-5-5"),
        ("cohere", "cohere", "command-r-08-2024"),
        ("azure", "azure", "gpt-4o"),  # genai-prices' own Azure table
    ],
)
@pytest.mark.parametrize("tokens", [CACHED, TokenCounts(input=1, output=0), TokenCounts(input=0, output=0)])
def test_cost_equals_genai_prices_called_directly(kind, provider_id, model, tokens):
    cost = our_price(kind, (model,), tokens)

    assert cost.source == CostSource.GENAI_PRICES
    assert cost.usd == direct_price(provider_id, model, tokens)


def test_azure_is_priced_from_genai_prices_azure_table_by_public_name():
    cost = our_price("azure", ("prod-4o-deployment", "gpt-4o"), CACHED)

    assert spec_for("azure").price_provider == "azure"
    assert cost.usd == direct_price("azure", "gpt-4o", CACHED)


def test_cached_input_is_priced_at_the_cached_rate_not_as_plain_input():
    plain = our_price("openai", ("gpt-4o-mini",), TokenCounts(input=10_000, output=100))
    cached = our_price("openai", ("gpt-4o-mini",), TokenCounts(input=10_000, output=100, cached_input=8_000))

    # gpt-4o-mini: $0.15 per million input tokens, $0.075 cached, $0.60 output.
    assert plain.usd == Decimal("0.0015") + Decimal("0.00006")
    assert cached.usd == Decimal("0.0003") + Decimal("0.0006") + Decimal("0.00006")
    assert cached.usd < plain.usd


def test_cache_writes_are_priced_at_their_own_rate_where_the_provider_has_one():
    read = our_price("anthropic", ("claude-haiku-4-5",), TokenCounts(input=1_000, output=0, cached_input=1_000))
    written = our_price("anthropic", ("claude-haiku-4-5",), TokenCounts(input=1_000, output=0, cache_write=1_000))
    plain = our_price("anthropic", ("claude-haiku-4-5",), TokenCounts(input=1_000, output=0))

    # Claude Haiku 4.5: $1 per million input, $0.10 cache read, $1.25 cache write.
    assert (read.usd, plain.usd, written.usd) == (Decimal("0.0001"), Decimal("0.001"), Decimal("0.00125"))


def test_an_unknown_price_is_flagged_and_empty_never_zero():
    cost = our_price("openai", ("gpt-test",), TokenCounts(input=100, output=10))
    assert (cost.source, cost.usd) == (CostSource.UNKNOWN, None)
    # More cached tokens than input ones cannot be priced either (genai-prices refuses them too).
    cost = our_price("openai", ("gpt-4o-mini",), TokenCounts(input=10, output=1, cached_input=20))
    assert (cost.source, cost.usd) == (CostSource.UNKNOWN, None)


def test_a_cost_too_large_for_the_column_is_flagged_unknown_rather_than_losing_the_row():
    absurd = PriceOverrideRule(
        prices=TokenPrices.per_million(
            input=Decimal("99999999"), output=Decimal("99999999"), cached_input=None, cache_write=None
        ),
        valid_from=None,
        valid_until=None,
        provider_id=None,
    )
    cost = our_price("openai", ("gpt-4o-mini",), TokenCounts(input=2**31 - 1, output=2**31 - 1), overrides=(absurd,))
    assert (cost.source, cost.usd) == (CostSource.UNKNOWN, None)


def test_a_price_override_wins_only_inside_its_validity_dates():
    rule = PriceOverrideRule(
        prices=TokenPrices.per_million(
            input=Decimal("1"), output=Decimal("2"), cached_input=Decimal("0.5"), cache_write=None
        ),
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=1),
        provider_id=None,
    )
    tokens = TokenCounts(input=1_000_000, output=1_000_000, cached_input=400_000, cache_write=100_000)

    def at(when: datetime) -> estimates.Cost:
        return estimates.cost(
            tokens, price_provider="openai", api_url="", model_names=("gpt-4o-mini",), when=when, overrides=(rule,)
        )

    inside = at(NOW)
    assert inside.source == CostSource.OVERRIDE
    # 500k plain input at $1, 400k cached at $0.50, 100k cache writes at the input price, 1M output at $2.
    assert inside.usd == Decimal("0.5") + Decimal("0.2") + Decimal("0.1") + Decimal("2")
    for outside in (NOW - timedelta(days=2), NOW + timedelta(days=1)):  # valid_until is exclusive
        assert at(outside).source == CostSource.GENAI_PRICES
        assert at(outside).usd == direct_price("openai", "gpt-4o-mini", tokens)


def test_prices_come_from_the_bundled_tables_and_nothing_is_fetched():
    our_price("openai", ("gpt-4o-mini",), CACHED)

    assert estimates._BUNDLED.from_auto_update is False
    # UpdatePrices, genai-prices' only network path, was never started.
    assert update_prices._shared_updater.thread is None
    assert update_prices._shared_updater.ref_count == 0


def test_each_row_names_the_method_and_versions():
    assert estimates.ESTIMATE_METHOD == "ecologits-0.11.3/genai-prices-0.2.3/greengate-1"


# --- Through the running gateway -------------------------------------------------------------------------------


def deployment(upstream: MockUpstream, model: str, *, kind: str = "openai", zone: str = "WOR", **fields: Any):
    provider = ProviderFactory(kind=kind, base_url=upstream.base_url(), electricity_zone=zone)
    return DeploymentFactory(model_name=model, provider=provider, **fields)


def post(gateway, api_key: str, path: str = "/v1/chat/completions", **body: Any) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "How green is this?"}], **body}
    return httpx.post(f"{gateway.url}{path}", json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)


def assert_row_is_ecologits_and_genai_prices(entry: LedgerEntry, kind: str, model: str, provider_id: str) -> None:
    """The row's figures are the two libraries' for the row's own tokens, latency and zone."""
    impacts = llm_impacts(kind, model, entry.completion_tokens, entry.latency_ms / 1000, entry.electricity_zone)
    assert figures_of(entry) == pytest.approx(joules_and_grams(impacts))
    usage = genai_prices.Usage(
        input_tokens=entry.prompt_tokens,
        cache_read_tokens=entry.cached_input_tokens,
        cache_write_tokens=entry.cache_write_tokens,
        output_tokens=entry.completion_tokens,
    )
    price = genai_prices.calc_price(usage, model, provider_id=provider_id, genai_request_timestamp=entry.created_at)
    assert entry.cost_usd == price.total_price.quantize(estimates.COST_QUANTUM)
    assert entry.estimate_method == estimates.ESTIMATE_METHOD


@pytest.mark.django_db(transaction=True)
def test_a_json_answer_carries_the_rows_figures_in_headers(gateway, api_key, upstream, ledger_row):
    deployment(upstream, "gpt-4o-mini", zone="FRA")

    response = post(gateway, api_key)

    assert response.status_code == 200, response.text
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.energy_source, entry.cost_source, entry.electricity_zone) == ("ecologits", "genai-prices", "FRA")
    assert float(response.headers["x-greengate-energy-joules"]) == entry.energy_joules > 0
    assert float(response.headers["x-greengate-co2e-grams"]) == entry.co2e_grams > 0
    assert Decimal(response.headers["x-greengate-cost-usd"]) == entry.cost_usd > 0
    assert_row_is_ecologits_and_genai_prices(entry, "openai", "gpt-4o-mini", "openai")


@pytest.mark.django_db(transaction=True)
def test_a_streams_final_usage_chunk_carries_the_rows_figures_and_the_sdk_reads_it(
    gateway, api_key, upstream, ledger_row
):
    deployment(upstream, "gpt-4o-mini")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key, max_retries=0)

    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream me something green"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())

    usage = chunks[-1].usage
    shown = usage.model_extra["greengate"]
    entry = ledger_row(request_id)
    assert (usage.prompt_tokens, usage.completion_tokens) == (entry.prompt_tokens, entry.completion_tokens)
    assert {name: shown[name] for name in figures_of(entry)} == figures_of(entry)
    assert Decimal(str(shown["cost_usd"])) == entry.cost_usd
    assert (shown["energy_source"], shown["cost_source"], shown["method"]) == (
        "ecologits",
        "genai-prices",
        estimates.ESTIMATE_METHOD,
    )
    assert_row_is_ecologits_and_genai_prices(entry, "openai", "gpt-4o-mini", "openai")


@pytest.mark.django_db(transaction=True)
def test_the_usage_chunk_is_a_valid_sdk_chunk_with_the_exact_cost_digits(gateway, api_key, upstream, ledger_row):
    deployment(upstream, "gpt-4o-mini")
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    ) as response:
        request_id = response.headers["x-request-id"]
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]

    assert data[-1] == "[DONE]"
    last = data[-2]
    chunk = ChatCompletionChunk.model_validate_json(last)
    assert chunk.choices == [] and chunk.usage is not None
    # Parsed with Decimal, the JSON number is the row's cost to the last digit.
    cost = json.loads(last, parse_float=Decimal)["usage"]["greengate"]["cost_usd"]
    assert cost == ledger_row(request_id).cost_usd


@pytest.mark.django_db(transaction=True)
def test_an_upstream_reporting_cached_tokens_is_priced_with_them(gateway, api_key, upstream, ledger_row):
    base = upstream.base_url().removesuffix("/v1") + "/claude/cache_read=1200,cache_write=300"
    provider = ProviderFactory(kind="anthropic", base_url=base, api_key="sk-ant-test")
    DeploymentFactory(model_name="claude-green", provider=provider, upstream_model="claude-haiku-4-5")

    response = post(gateway, api_key, model="claude-green")

    assert response.status_code == 200, response.text
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.cached_input_tokens, entry.cache_write_tokens) == (1200, 300)
    assert_row_is_ecologits_and_genai_prices(entry, "anthropic", "claude-haiku-4-5", "anthropic")
    as_plain_input = our_price(
        "anthropic", ("claude-haiku-4-5",), TokenCounts(input=entry.prompt_tokens, output=entry.completion_tokens)
    )
    assert entry.cost_usd != as_plain_input.usd
    assert Decimal(response.headers["x-greengate-cost-usd"]) == entry.cost_usd


@pytest.mark.django_db(transaction=True)
def test_an_unknown_model_is_estimated_by_fallback_and_its_unknown_price_sends_no_cost(
    gateway, api_key, upstream, ledger_row
):
    deployment(upstream, "gpt-test", parameters_billions=13.0)

    response = post(gateway, api_key, model="gpt-test")

    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.energy_source, entry.cost_source, entry.cost_usd) == ("parameters", "unknown", None)
    assert float(response.headers["x-greengate-energy-joules"]) == entry.energy_joules > 0
    assert "x-greengate-cost-usd" not in response.headers


@pytest.mark.django_db(transaction=True)
def test_a_price_override_from_admin_reaches_the_row(gateway, api_key, upstream, ledger_row):
    target = deployment(upstream, "gpt-4o-mini")
    PriceOverride.objects.create(
        provider=target.provider,
        model="gpt-4o-mini",
        input_per_million=Decimal("1000"),
        output_per_million=Decimal("1000"),
        valid_from=datetime.now(UTC) - timedelta(hours=1),
    )
    PriceOverride.objects.create(  # expired: never applies
        provider_kind="openai",
        model="gpt-4o-mini",
        input_per_million=Decimal("7"),
        output_per_million=Decimal("7"),
        valid_until=datetime.now(UTC) - timedelta(hours=1),
    )
    time.sleep(0.3)  # the config version moved on commit; let the gateway's next check see it

    response = post(gateway, api_key)

    entry = ledger_row(response.headers["x-request-id"])
    assert entry.cost_source == "override"
    assert entry.cost_usd == Decimal(entry.prompt_tokens + entry.completion_tokens) / 1000
    assert Decimal(response.headers["x-greengate-cost-usd"]) == entry.cost_usd


@pytest.mark.django_db(transaction=True)
def test_embeddings_are_priced_but_their_energy_is_flagged_not_estimated(gateway, api_key, upstream, ledger_row):
    deployment(upstream, "text-embedding-3-small")

    response = httpx.post(
        f"{gateway.url}/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "green gateways"},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.energy_source, entry.energy_joules, entry.cost_source) == ("not_estimated", 0, "genai-prices")
    assert Decimal(response.headers["x-greengate-cost-usd"]) == entry.cost_usd > 0
    assert "x-greengate-energy-joules" not in response.headers


@pytest.mark.django_db(transaction=True)
def test_a_request_that_reached_no_provider_is_zero_and_flagged_none(gateway, api_key, ledger_row):
    response = post(gateway, api_key, model="no-such-model")

    assert response.status_code == 404
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.energy_source, entry.cost_source, entry.energy_joules, entry.cost_usd) == ("none", "none", 0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_client_leaving_mid_stream_is_estimated_from_what_was_streamed(gateway, api_key, upstream, ledger_row):
    provider = ProviderFactory(kind="openai", base_url=upstream.base_url(chunk_delay=0.1, words=100))
    DeploymentFactory(model_name="gpt-4o-mini", provider=provider)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "tell me a story"}], "stream": True}
    seen = 0
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    ) as response:
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 6:
                break

    entry = ledger_row(request_id)
    assert entry.status_code == 499
    assert 0 < entry.completion_tokens < 100
    assert entry.energy_source == "ecologits" and entry.cost_source == "genai-prices"
    assert_row_is_ecologits_and_genai_prices(entry, "openai", "gpt-4o-mini", "openai")


@pytest.mark.django_db
def test_the_snapshot_holds_a_deployments_overrides_a_providers_own_first_then_the_latest():
    from gateway.live_config import load_snapshot

    mine = DeploymentFactory(model_name="gpt-4o-mini", provider=ProviderFactory(kind="openai"))
    other = DeploymentFactory(model_name="gpt-4o-mini", provider=ProviderFactory(kind="openai"), weight=2)
    prices = {"input_per_million": Decimal("1"), "output_per_million": Decimal("1")}
    kind_old = PriceOverride.objects.create(provider_kind="openai", model="gpt-4o-mini", valid_from=NOW, **prices)
    kind_new = PriceOverride.objects.create(
        provider_kind="openai", model="gpt-4o-mini", valid_from=NOW + timedelta(days=30), **prices
    )
    own = PriceOverride.objects.create(provider=mine.provider, model="gpt-4o-mini", **prices)
    PriceOverride.objects.create(provider_kind="anthropic", model="gpt-4o-mini", **prices)  # another kind

    targets = {t.deployment_id: t for t in load_snapshot(1).routes["gpt-4o-mini"]}

    def starts(deployment) -> list[Any]:
        return [(rule.provider_id, rule.valid_from) for rule in targets[deployment.pk].price_overrides]

    assert starts(mine) == [(own.provider_id, None), (None, kind_new.valid_from), (None, kind_old.valid_from)]
    assert starts(other) == [(None, kind_new.valid_from), (None, kind_old.valid_from)]
