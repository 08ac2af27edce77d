"""What every voter answers, and the policy every voter follows.

A vote never raises: a timeout, an HTTP error, a refusal or output that fails the schema is
an abstention with its reason. Each voter has one overall deadline; inside it, only 429 and
5xx answers are retried (honouring Retry-After), because the SDKs' own retries are off.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_REASONING = 500
_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)


class Vote(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    action: Literal["BUY", "SELL", "HOLD"]
    confidence: float = Field(ge=0, le=1)
    reasoning: str = Field(max_length=MAX_REASONING)
    cited_indicators: list[str] = Field(max_length=20)


# The JSON schema handed to every provider (strict: all fields required, nothing else).
VOTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["BUY", "SELL", "HOLD"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reasoning": {"type": "string", "maxLength": MAX_REASONING},
        "cited_indicators": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["action", "confidence", "reasoning", "cited_indicators"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class VotePrompt:
    system: str
    user: str


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: Decimal
    output: Decimal


@dataclass(frozen=True)
class VoteResult:
    provider: str
    model: str
    vote: Vote | None
    abstain_reason: str | None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0
    cost_usd: Decimal = field(default=Decimal(0))


@dataclass(frozen=True)
class Answer:
    """What a provider returned: the vote as JSON text or as an already-parsed object."""

    content: str | dict[str, Any] | None
    tokens_in: int
    tokens_out: int
    refusal: str | None = None


class ProviderHTTPError(Exception):
    def __init__(self, status: int, retry_after_s: float | None = None) -> None:
        super().__init__(f"http {status}")
        self.status = status
        self.retry_after_s = retry_after_s


def retry_after_seconds(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_vote(content: str | dict[str, Any] | None) -> Vote:
    data = json.loads(content) if isinstance(content, str) else content
    return Vote.model_validate(data)


class Voter(ABC):
    """One provider and model. Subclasses only connect, send one request and read one answer."""

    def __init__(
        self,
        provider: str,
        model: str,
        *,
        api_key: str,
        base_url: str | None,
        timeout_s: float,
        price: ModelPrice | None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.timeout_s = timeout_s
        self.price = price
        self._connect(api_key, base_url)

    @abstractmethod
    def _connect(self, api_key: str, base_url: str | None) -> None:
        """Make the SDK client, with its own retries off: our policy is the only one."""

    @abstractmethod
    async def _ask(self, prompt: VotePrompt, remaining_s: float) -> Answer:
        """Send once; raise ProviderHTTPError for an HTTP error status."""

    @abstractmethod
    async def aclose(self) -> None: ...

    def _cost(self, answer: Answer) -> Decimal:
        if self.price is None:
            return Decimal(0)
        per_million = Decimal(1_000_000)
        return (
            self.price.input * answer.tokens_in + self.price.output * answer.tokens_out
        ) / per_million

    async def vote(self, prompt: VotePrompt) -> VoteResult:
        started = time.monotonic()
        deadline = started + self.timeout_s
        answer: Answer | None = None

        def result(vote: Vote | None, reason: str | None) -> VoteResult:
            return VoteResult(
                provider=self.provider,
                model=self.model,
                vote=vote,
                abstain_reason=reason,
                tokens_in=answer.tokens_in if answer else 0,
                tokens_out=answer.tokens_out if answer else 0,
                latency_ms=int((time.monotonic() - started) * 1000),
                cost_usd=self._cost(answer) if answer else Decimal(0),
            )

        try:
            async with asyncio.timeout(self.timeout_s):
                answer = await self._ask_with_retries(prompt, deadline)
        except TimeoutError:
            return result(None, f"timeout after {self.timeout_s:g}s")
        except ProviderHTTPError as exc:
            return result(None, f"http {exc.status}")
        except Exception as exc:  # a transport or SDK failure: abstain, never crash the panel
            return result(None, f"error: {type(exc).__name__}")
        if answer.refusal is not None:
            return result(None, f"refused: {answer.refusal[:200]}")
        try:
            return result(parse_vote(answer.content), None)
        except (ValueError, TypeError, ValidationError) as exc:
            first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            return result(None, f"invalid output: {first[:200]}")

    async def _ask_with_retries(self, prompt: VotePrompt, deadline: float) -> Answer:
        for pause in (*_BACKOFF_S, None):
            try:
                return await self._ask(prompt, deadline - time.monotonic())
            except ProviderHTTPError as exc:
                retryable = exc.status == 429 or exc.status >= 500
                wait = exc.retry_after_s if exc.retry_after_s is not None else pause
                if not retryable or wait is None or time.monotonic() + wait >= deadline:
                    raise
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")
