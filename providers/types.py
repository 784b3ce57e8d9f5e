"""What the hot path knows of a deployment, and the one error type adapters raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.estimates import PriceOverrideRule


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a deployment's circuit breaker opens, and for how long (see providers.breaker)."""

    failures: int = 5
    failure_rate: float = 0.5
    min_requests: int = 20
    window_seconds: float = 60.0
    open_seconds: float = 30.0
    probes: int = 1


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment as the hot path sees it: a plain copy of the Provider and Deployment rows."""

    deployment_id: int
    provider_id: int
    provider_name: str
    kind: str
    base_url: str
    api_key: str = field(repr=False)
    upstream_model: str
    weight: int
    priority: int
    # Seconds: to connect, to the first byte of the answer, and for the whole call (a stream included).
    connect_timeout: float = 5.0
    first_byte_timeout: float = 60.0
    total_timeout: float = 600.0
    # Provider-specific settings (an API version, a region), as the adapter declared them.
    options: dict[str, str] = field(default_factory=dict)
    # May the base URL be (or resolve to) a loopback, private or link-local address.
    allow_private_network: bool = False
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    # For the ledger's estimates: the provider's electricity mix, the model's size if an admin gave it, and the
    # negotiated prices for this provider and upstream model, in order of precedence.
    electricity_zone: str = "WOR"
    parameters_billions: float | None = None
    price_overrides: tuple[PriceOverrideRule, ...] = ()


class ProviderError(Exception):
    """The one error type adapters raise; the routing loop alone decides what happens next.

    `message` must be safe to show the client: never an upstream's words about credentials.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        code: str = "upstream_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.code = code
