"""Everything one request learns on its way through the pipeline, until it is accounted."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.schemas import ChatRequest, EmbeddingRequest, Usage

if TYPE_CHECKING:
    from gateway.admission.budgets import Budget
    from gateway.admission.idempotency import Claim
    from gateway.admission.limiter import Limit
    from gateway.errors import GatewayError
    from gateway.live_config import KeyEntry, Snapshot
    from ledger.models import LedgerEntry
    from providers.types import Target

CLIENT_CLOSED = 499  # the client left before the answer was complete (nginx's convention)
CHAT = "chat.completions"
EMBEDDINGS = "embeddings"
# The API paths that run the pipeline, and the endpoint each is recorded as.
ENDPOINTS = {"/v1/chat/completions": CHAT, "/v1/embeddings": EMBEDDINGS}


@dataclass(slots=True)
class Attempt:
    provider: str
    outcome: str  # "ok", or the error code of a failed try


@dataclass(slots=True, eq=False)
class Call:
    request_id: str
    client_request_id: str = ""
    endpoint: str = CHAT
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    chat: ChatRequest | None = None
    embedding: EmbeddingRequest | None = None
    stream: bool = False
    key: KeyEntry | None = None
    snapshot: Snapshot | None = None
    # A refusal found while identifying the request, answered by the pipeline like any other.
    error: GatewayError | None = None
    target: Target | None = None
    attempts: list[Attempt] = field(default_factory=list)
    status: int | None = None
    error_code: str = ""
    usage: Usage | None = None
    # Generated text as it went out, for GreenGate's own count when the upstream reports no usage.
    output: list[str] = field(default_factory=list)
    first_token_at: float | None = None
    cache_status: str = "none"
    accounted: bool = False
    # The row accounting queued: what the client is shown of the estimates comes from it.
    entry: LedgerEntry | None = None
    client_address: str = ""
    # Headers every answer to this call carries (x-ratelimit-*), errors included.
    response_headers: dict[str, str] = field(default_factory=dict)
    # Token limits the call reserved `reserved_tokens` against, settled to the real usage once accounted.
    token_limits: list[Limit] = field(default_factory=list)
    reserved_tokens: int = 0
    # GreenGate's count of the prompt and the most output the call may ask for (limits and budgets share it).
    token_estimate: tuple[int, int] | None = None
    # Budgets the call reserved `budget_reservation` against (nano-USD), settled to its cost once accounted.
    budgets: list[Budget] = field(default_factory=list)
    budget_reservation: int = 0
    # The request's idempotency key and body fingerprint; the claim once this call owns the key.
    idempotency_key: str | None = None
    fingerprint: str = ""
    idempotency: Claim | None = None
    # For a repeat answered from an idempotency key's stored answer: the request that ran.
    replay_of: str = ""

    @property
    def model(self) -> str:
        """The model the client asked for, once the request is parsed."""
        if self.chat is not None:
            return self.chat.model
        return self.embedding.model if self.embedding is not None else ""

    def fail(self, status: int, code: str | None) -> None:
        self.status = status
        self.error_code = code or ""

    def attempt(self, target: Target, outcome: str) -> None:
        self.attempts.append(Attempt(target.provider_name, outcome))

    def saw_output(self, text: str) -> None:
        if text:
            self.output.append(text)
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
