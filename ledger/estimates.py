"""Energy (joules), carbon (gCO2e) and cost (USD) of one request: plain functions over plain values.

Energy and carbon come from `ecologits`, cost from `genai-prices`, both offline, both pinned; each ledger row
keeps `ESTIMATE_METHOD`, so a row stays explainable after either library's numbers change.

**Energy** follows ecologits' methodology, which counts *output tokens only* (and the request's latency): the
prompt, cached or not, adds nothing. Models ecologits does not know (self-hosted, demo, new names) fall back to
ecologits' own per-parameter model fed with the deployment's `parameters_billions`, else `DEFAULT_PARAMETERS`;
the row says which (`energy_source`). Embeddings are not estimated: ecologits has no embedding model.

**Carbon** is ecologits' GWP (use phase from the provider's electricity zone, plus the embodied share of the
hardware) for the energy above.

Both run on the event loop for every request. ecologits' `llm_impacts` costs about 300 us (a pydantic-heavy
DAG walk), so what depends only on (provider, model, zone) is resolved once and cached, and each request calls
ecologits' own step functions (`ecologits.impacts.llm`) in the order its DAG does: about 13 us, and equal to
`llm_impacts` (tests/test_estimates.py compares them).

**Cost** uses the price tables bundled in the genai-prices wheel, read through a `DataSnapshot` built here
from `genai_prices.data`: never `get_snapshot()`, whose global can be replaced by `UpdatePrices`, the package's
only network path, which GreenGate never starts. genai-prices counts cache reads and writes *inside*
`input_tokens` (it prices the remainder at the input rate and raises if they exceed it): OpenAI's convention,
which is GreenGate's `Usage`, so the counts map one to one. `calc_price` costs about 50 us, so each resolved
price (one per model and price period) is turned once into per-token prices, by asking genai-prices itself
for the price of single tokens; a request is then four Decimal products, about 2 us. That holds while prices are linear
in the counts: a tiered price (the rate depends on the prompt's size) is priced by `calc_price` per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Final

import ecologits
import genai_prices
from ecologits.electricity_mix_repository import electricity_mixes
from ecologits.impacts import llm as eco
from ecologits.model_repository import ParametersMoE
from ecologits.model_repository import models as eco_models
from ecologits.tracers.utils import PROVIDER_CONFIG_MAP
from ecologits.utils.range_value import RangeValue
from genai_prices.data import providers as bundled_providers
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices

# Bump the last part when GreenGate's own choices below change (fallback sizes, mappings).
ESTIMATE_METHOD: Final = f"ecologits-{ecologits.__version__}/genai-prices-{genai_prices.__version__}/greengate-1"

WORLD_ZONE: Final = "WOR"  # ecologits' world electricity mix
KWH_TO_JOULES: Final = 3.6e6
KG_TO_GRAMS: Final = 1000.0
PER_MILLION: Final = Decimal(1_000_000)
# Costs are kept to 1e-12 USD: a single token of the cheapest model is about 1e-8. The column holds 20 digits,
# so 8 before the point: a cost beyond (absurd counts or override prices) is flagged unknown, not a lost row.
COST_QUANTUM: Final = Decimal("1e-12")
COST_LIMIT: Final = Decimal(10) ** 8

# A model nobody sized: a dense model of 7 to 70 billion parameters, the span of common open models.
DEFAULT_PARAMETERS: Final = RangeValue(min=7, max=70)
# Where an unknown provider's model runs: ecologits' profile of a cloud host of open models (its PUE range).
FALLBACK_DATACENTER: Final = PROVIDER_CONFIG_MAP["huggingface_hub"]


class EnergySource:
    ECOLOGITS = "ecologits"  # the model is in ecologits' data
    PARAMETERS = "parameters"  # ecologits' model fed with the deployment's parameter count
    DEFAULT = "default"  # ecologits' model fed with DEFAULT_PARAMETERS
    NOT_ESTIMATED = "not_estimated"  # a provider was called, but nothing models it (embeddings)
    NONE = "none"  # no provider was called
    FAILED = "failed"  # estimating raised (logged); the row is kept all the same


class CostSource:
    GENAI_PRICES = "genai-prices"
    OVERRIDE = "override"  # a negotiated price from admin (ledger.PriceOverride)
    UNKNOWN = "unknown"  # no price for this model: cost_usd is NULL, never 0
    NONE = "none"  # no provider was called
    FAILED = "failed"


def electricity_zones() -> list[str]:
    """The zones ecologits has an electricity mix for (ISO 3166-1 alpha-3, and WOR for the world)."""
    return sorted(mix.zone for mix in electricity_mixes.list_electricity_mixes())


# --- Energy and carbon -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SizeRun:
    """ecologits' per-request computation for one bound of a model's size, minus what depends on the request."""

    active_parameters: float
    gpus: int  # GPUs needed to hold the model
    embodied_gwp: float  # kgCO2e of the server share and GPUs


@dataclass(frozen=True, slots=True)
class EnergyProfile:
    """What ecologits needs of a model, resolved once per (provider, model, parameter count)."""

    source: str
    runs: tuple[_SizeRun, ...]  # one per size bound (two when the size is a range), as compute_llm_impacts
    pue: tuple[float, float]
    tps: float | None
    ttft: float | None


@dataclass(frozen=True, slots=True)
class Impact:
    """Energy in joules and carbon in grams CO2e: the central value and its range."""

    source: str
    zone: str
    energy_joules: float = 0.0
    energy_joules_min: float = 0.0
    energy_joules_max: float = 0.0
    co2e_grams: float = 0.0
    co2e_grams_min: float = 0.0
    co2e_grams_max: float = 0.0


def _bounds(value: float | int | RangeValue) -> tuple[float, float]:
    return (value.min, value.max) if isinstance(value, RangeValue) else (value, value)


def _size_run(active: float, total: float) -> _SizeRun:
    memory = eco.model_required_memory(
        model_total_parameter_count=total, model_quantization_bits=eco.MODEL_QUANTIZATION_BITS
    )
    gpus = eco.gpu_required_count(model_required_memory=memory, gpu_memory=eco.GPU_MEMORY)
    embodied = eco.server_gpu_embodied_gwp(
        server_embodied_gwp=eco.SERVER_EMBODIED_IMPACT_GWP,
        server_gpu_count=eco.SERVER_GPUS,
        gpu_embodied_gwp=eco.GPU_EMBODIED_IMPACT_GWP,
        gpu_required_count=gpus,
    )
    return _SizeRun(active_parameters=active, gpus=gpus, embodied_gwp=embodied)


def _profile(
    source: str,
    active: float | int | RangeValue,
    total: float | int | RangeValue,
    pue: float | RangeValue,
    tps: float | None = None,
    ttft: float | None = None,
) -> EnergyProfile:
    # As ecologits' compute_llm_impacts: a size range is computed at both bounds, the low one first.
    if isinstance(active, RangeValue) or isinstance(total, RangeValue):
        actives, totals = _bounds(active), _bounds(total)
        runs = tuple(_size_run(a, t) for a, t in zip(actives, totals, strict=True))
    else:
        runs = (_size_run(active, total),)
    return EnergyProfile(source=source, runs=runs, pue=_bounds(pue), tps=tps, ttft=ttft)


@lru_cache(maxsize=4096)
def energy_profile(
    ecologits_provider: str | None, model_names: tuple[str, ...], parameters_billions: float | None
) -> EnergyProfile:
    """The model as ecologits knows it (first of `model_names` found), else the per-parameter fallback."""
    if ecologits_provider is not None:
        for name in model_names:
            model = eco_models.find_model(provider=ecologits_provider, model_name=name)
            if model is None:
                continue
            size = model.architecture.parameters
            active, total = (size.active, size.total) if isinstance(size, ParametersMoE) else (size, size)
            deployment = model.deployment
            return _profile(
                EnergySource.ECOLOGITS,
                active,
                total,
                PROVIDER_CONFIG_MAP[ecologits_provider].datacenter_pue,
                tps=deployment.tps if deployment else None,
                ttft=deployment.ttft if deployment else None,
            )
    # A known provider's datacenter still applies to a model it serves that ecologits does not list.
    config = PROVIDER_CONFIG_MAP.get(ecologits_provider or "", FALLBACK_DATACENTER)
    if parameters_billions is not None:
        return _profile(EnergySource.PARAMETERS, parameters_billions, parameters_billions, config.datacenter_pue)
    return _profile(EnergySource.DEFAULT, DEFAULT_PARAMETERS, DEFAULT_PARAMETERS, config.datacenter_pue)


@lru_cache(maxsize=512)
def _mix_gwp(zone: str) -> float:
    mix = electricity_mixes.find_electricity_mix(zone=zone)
    if mix is None:
        raise LookupError(f"ecologits has no electricity mix for zone {zone!r}")
    return mix.gwp  # kgCO2e per kWh


def impact(profile: EnergyProfile, *, output_tokens: int, latency_seconds: float, zone: str) -> Impact:
    """ecologits' energy and GWP for one request, from its step functions in the order of its DAG.

    Equal to `ecologits.tracers.utils.llm_impacts` for the same inputs (see the module docstring for why it is
    not called directly).
    """
    gwp_per_kwh = _mix_gwp(zone)
    energy: list[tuple[float, float]] = []
    gwp: list[tuple[float, float]] = []
    for run in profile.runs:
        gpu_energy = eco.gpu_energy(
            model_active_parameter_count=run.active_parameters,
            output_token_count=output_tokens,
            batch_size=eco.BATCH_SIZE,
            gpu_energy_alpha=eco.GPU_ENERGY_ALPHA,
            gpu_energy_beta=eco.GPU_ENERGY_BETA,
            gpu_energy_gamma=eco.GPU_ENERGY_GAMMA,
        )
        latency = eco.generation_latency(
            model_active_parameter_count=run.active_parameters,
            output_token_count=output_tokens,
            batch_size=eco.BATCH_SIZE,
            latency_alpha=eco.LATENCY_ALPHA,
            latency_beta=eco.LATENCY_BETA,
            latency_gamma=eco.LATENCY_GAMMA,
            request_latency=latency_seconds,
            tps=profile.tps,
            ttft=profile.ttft,
        )
        server_energy = eco.server_energy(
            generation_latency=latency,
            server_power=eco.SERVER_POWER,
            server_gpu_count=eco.SERVER_GPUS,
            gpu_required_count=run.gpus,
            batch_size=eco.BATCH_SIZE,
        )
        it_energy = eco.request_it_energy(
            server_energy=server_energy, gpu_required_count=run.gpus, gpu_energy=gpu_energy
        )
        # A PUE range gives an energy range (ecologits' RangeValue arithmetic, done on its two bounds).
        low, high = (eco.request_energy(datacenter_pue=pue, request_it_energy=it_energy) for pue in profile.pue)
        embodied = eco.request_embodied_gwp(
            server_gpu_embodied_gwp=run.embodied_gwp,
            server_lifetime=eco.HARDWARE_LIFESPAN,
            generation_latency=latency,
            batch_size=eco.BATCH_SIZE,
        )
        energy.append((low, high))
        gwp.append((low * gwp_per_kwh + embodied, high * gwp_per_kwh + embodied))
    # Across size bounds, as compute_llm_impacts: the low bound's minimum and the high bound's maximum.
    e_min, e_max = energy[0][0], energy[-1][1]
    g_min, g_max = gwp[0][0], gwp[-1][1]
    return Impact(
        source=profile.source,
        zone=zone,
        energy_joules=(e_min + e_max) / 2 * KWH_TO_JOULES,
        energy_joules_min=e_min * KWH_TO_JOULES,
        energy_joules_max=e_max * KWH_TO_JOULES,
        co2e_grams=(g_min + g_max) / 2 * KG_TO_GRAMS,
        co2e_grams_min=g_min * KG_TO_GRAMS,
        co2e_grams_max=g_max * KG_TO_GRAMS,
    )


# --- Cost ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Tokens as GreenGate's Usage counts them: `input` includes `cached_input` and `cache_write`."""

    input: int
    output: int
    cached_input: int = 0
    cache_write: int = 0

    @property
    def valid(self) -> bool:
        return min(self.input, self.output, self.cached_input, self.cache_write) >= 0 and (
            self.cached_input + self.cache_write <= self.input
        )


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """USD per token of each kind, plus a fixed price per request; cached and cache-write tokens priced apart."""

    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal
    per_request: Decimal = Decimal(0)

    @classmethod
    def per_million(
        cls, *, input: Decimal, output: Decimal, cached_input: Decimal | None, cache_write: Decimal | None
    ) -> TokenPrices:
        """From USD per million tokens; a kind with no rate of its own is billed as plain input."""
        return cls(
            input=input / PER_MILLION,
            output=output / PER_MILLION,
            cached_input=(input if cached_input is None else cached_input) / PER_MILLION,
            cache_write=(input if cache_write is None else cache_write) / PER_MILLION,
        )

    def cost(self, tokens: TokenCounts) -> Decimal:
        plain_input = tokens.input - tokens.cached_input - tokens.cache_write
        return (
            self.per_request
            + plain_input * self.input
            + tokens.cached_input * self.cached_input
            + tokens.cache_write * self.cache_write
            + tokens.output * self.output
        )


@dataclass(frozen=True, slots=True)
class PriceOverrideRule:
    """A negotiated price (ledger.PriceOverride) as the hot path holds it: valid in [valid_from, valid_until)."""

    prices: TokenPrices
    valid_from: datetime | None
    valid_until: datetime | None
    provider_id: int | None  # None: every provider of the kind

    def valid_at(self, when: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= when) and (
            self.valid_until is None or when < self.valid_until
        )


@dataclass(frozen=True, slots=True)
class Cost:
    source: str
    usd: Decimal | None  # None when the price is unknown: never a silent 0


# The bundled tables only; see the module docstring.
_BUNDLED = DataSnapshot(providers=bundled_providers, from_auto_update=False)


@lru_cache(maxsize=4096)
def price_model(price_provider: str | None, api_url: str, model_names: tuple[str, ...]) -> ModelInfo | None:
    """genai-prices' model: by provider id, else by the provider's API URL (OpenRouter, Groq...)."""
    for name in model_names:
        try:
            if price_provider is not None:
                return _BUNDLED.find_provider_model(name, None, price_provider, None)[1]
            if api_url:
                return _BUNDLED.find_provider_model(name, None, None, api_url)[1]
        except LookupError:
            continue
    return None


def _probe(price: ModelPrice, **counts: int) -> Decimal:
    return price.calc_price(genai_prices.Usage(**counts))["total_price"]


# Keyed by the resolved ModelPrice's id (it defines __eq__ without __hash__); it is kept in the value, so the id
# cannot be reused while the entry lives. A model has a handful of price periods at most.
_token_prices: dict[int, tuple[ModelPrice, TokenPrices | None]] = {}


def token_prices(price: ModelPrice) -> TokenPrices | None:
    """genai-prices' price as per-token prices, read off genai-prices itself; None if not linear (tiers)."""
    cached = _token_prices.get(id(price))
    if cached is not None and cached[0] is price:
        return cached[1]
    linear: TokenPrices | None = None
    if not any(isinstance(value, TieredPrices) for value in vars(price).values()):
        fixed = _probe(price)
        linear = TokenPrices(
            per_request=fixed,
            input=_probe(price, input_tokens=1) - fixed,
            output=_probe(price, output_tokens=1) - fixed,
            cached_input=_probe(price, input_tokens=1, cache_read_tokens=1) - fixed,
            cache_write=_probe(price, input_tokens=1, cache_write_tokens=1) - fixed,
        )
    _token_prices[id(price)] = (price, linear)
    return linear


def cost(
    tokens: TokenCounts,
    *,
    price_provider: str | None,
    api_url: str,
    model_names: tuple[str, ...],
    when: datetime,
    overrides: tuple[PriceOverrideRule, ...] = (),
) -> Cost:
    """The request's price in USD: a negotiated override valid at `when` wins, else genai-prices' table."""
    if not tokens.valid:
        return Cost(CostSource.UNKNOWN, None)
    for rule in overrides:  # ordered by precedence when the snapshot is built
        if rule.valid_at(when):
            return _bounded(CostSource.OVERRIDE, rule.prices.cost(tokens))
    model = price_model(price_provider, api_url, model_names)
    if model is None:
        return Cost(CostSource.UNKNOWN, None)
    price = model.get_prices(when)
    linear = token_prices(price)
    if linear is not None:
        usd = linear.cost(tokens)
    else:
        usd = price.calc_price(
            genai_prices.Usage(
                input_tokens=tokens.input,
                cache_read_tokens=tokens.cached_input,
                cache_write_tokens=tokens.cache_write,
                output_tokens=tokens.output,
            )
        )["total_price"]
    return _bounded(CostSource.GENAI_PRICES, usd)


def _bounded(source: str, usd: Decimal) -> Cost:
    if not usd < COST_LIMIT:
        return Cost(CostSource.UNKNOWN, None)
    return Cost(source, usd.quantize(COST_QUANTUM))
