"""What every voter answers, and the policy every voter follows.

A vote never raises: a timeout, an HTTP error, a refusal or output that fails the schema is
an abstention with its reason. Each voter has one overall deadline; inside it, only 429 and
5xx answers are retried (honouring Retry-After), because the SDKs' own retries are off.
Every request caps its output at MAX_OUTPUT_TOKENS, so what a vote can cost is known before
it is asked (see `ModelPrice.most_for`).
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)
from tenacity.stop import stop_base

from app.core.schemas import Amount

MAX_REASONING = 500
# A vote is about 200 tokens; the cap leaves room for a model's hidden reasoning tokens
# (billed as output) while bounding what one answer can cost.
MAX_OUTPUT_TOKENS = 1024
# Tokens a provider adds around the messages and the schema: roles, and the system prompt
# Anthropic adds for a forced tool (about 350 by its documentation).
_FRAMING_TOKENS = 500
_ATTEMPTS = 6  # the first request and five retries, backing off 0.25 s to 4 s


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


class ModelPrice(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Amount = Field(ge=0, le=10_000, decimal_places=6)
    output: Amount = Field(ge=0, le=10_000, decimal_places=6)

    def cost(self, tokens_in: int, tokens_out: int) -> Decimal:
        return (self.input * tokens_in + self.output * tokens_out) / Decimal(1_000_000)

    def most_for(self, prompt: VotePrompt) -> Decimal:
        """An upper bound of what asking `prompt` costs, to reserve before asking."""
        return self.cost(prompt_tokens_at_most(prompt), MAX_OUTPUT_TOKENS)


def prompt_tokens_at_most(prompt: VotePrompt) -> int:
    """Byte-level BPE tokenizers never make more tokens than the text has UTF-8 bytes; the
    schema travels with every request."""
    sent = prompt.system + prompt.user + json.dumps(VOTE_SCHEMA)
    return len(sent.encode()) + _FRAMING_TOKENS


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
    # What the model answered, as text (a provider's parsed object as JSON); None: no answer.
    response_text: str | None = None


@dataclass(frozen=True)
class Answer:
    """What a provider returned: the vote as JSON text or as an already-parsed object."""

    content: str | dict[str, Any] | None
    tokens_in: int
    tokens_out: int
    refusal: str | None = None

    @property
    def text(self) -> str | None:
        """The answer as the decision records it: the refusal, the text, or the object's JSON."""
        if self.refusal is not None:
            return self.refusal
        if self.content is None or isinstance(self.content, str):
            return self.content
        return json.dumps(self.content, ensure_ascii=False)


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
    ) -> None:
        self.provider = provider
        self.model = model
        self.timeout_s = timeout_s
        self._connect(api_key, base_url)

    @abstractmethod
    def _connect(self, api_key: str, base_url: str | None) -> None:
        """Make the SDK client, with its own retries off: our policy is the only one."""

    @abstractmethod
    async def _ask(self, prompt: VotePrompt, remaining_s: float) -> Answer:
        """Send once, with output capped at MAX_OUTPUT_TOKENS; raise ProviderHTTPError for an
        HTTP error status."""

    @abstractmethod
    async def aclose(self) -> None: ...

    async def vote(self, prompt: VotePrompt, price: ModelPrice) -> VoteResult:
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
                cost_usd=price.cost(answer.tokens_in, answer.tokens_out) if answer else Decimal(0),
                response_text=answer.text if answer else None,
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
        async def once() -> Answer:
            return await self._ask(prompt, deadline - time.monotonic())

        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            wait=_retry_after_or(wait_exponential(multiplier=0.25, max=4)),
            stop=stop_after_attempt(_ATTEMPTS) | _StopBefore(deadline),
            reraise=True,
        )
        return await retrying(once)


class _StopBefore(stop_base):
    """Stop rather than sleep into the deadline (a monotonic instant)."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def __call__(self, state: RetryCallState) -> bool:
        return time.monotonic() + state.upcoming_sleep >= self._deadline


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderHTTPError) and (exc.status == 429 or exc.status >= 500)


def _retry_after_or(
    backoff: Callable[[RetryCallState], float],
) -> Callable[[RetryCallState], float]:
    """The provider's Retry-After when it sent one, else our backoff."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ProviderHTTPError) and exc.retry_after_s is not None:
            return exc.retry_after_s
        return backoff(state)

    return wait
