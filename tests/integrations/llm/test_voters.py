"""The real OpenAI, Anthropic and Gemini SDKs against the local fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.core.settings import Settings
from app.integrations.llm.base import MAX_OUTPUT_TOKENS, ModelPrice, Voter
from app.integrations.llm.prompt import render
from app.integrations.llm.registry import build_voter
from tests.fakes import FakeProvider, RunningFakes

PROMPT = render(
    "BTCUSDT",
    "1h",
    datetime(2026, 11, 24, 3, tzinfo=UTC),
    {"rsi": {"value": 28.1, "signal": 1.0, "weight": "1"}},
    ["60000.00", "60100.50"],
)
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
PRICE = ModelPrice(input=Decimal("0.15"), output=Decimal("0.60"))
FREE = ModelPrice(input=Decimal(0), output=Decimal(0))


def fake_for(fakes: RunningFakes, provider: str) -> FakeProvider:
    return getattr(fakes, provider)


@pytest.fixture(params=list(MODELS))
async def voter(
    request: pytest.FixtureRequest, llm_fakes: RunningFakes
) -> AsyncIterator[tuple[Voter, FakeProvider]]:
    settings = Settings(**llm_fakes.settings_overrides(), llm_timeout_s=1.5)
    built = build_voter(request.param, MODELS[request.param], settings)
    assert built is not None
    yield built, fake_for(llm_fakes, request.param)
    await built.aclose()


async def test_a_valid_vote_with_tokens_and_cost(voter) -> None:
    v, fake = voter
    result = await v.vote(PROMPT, PRICE)
    assert result.abstain_reason is None and result.vote is not None
    assert (result.vote.action, result.vote.confidence) == ("BUY", 0.8)
    assert result.vote.cited_indicators == ["rsi", "ema_cross"]
    assert (result.tokens_in, result.tokens_out) == (120, 40)
    assert result.cost_usd == (PRICE.input * 120 + PRICE.output * 40) / Decimal(10**6)
    assert fake.requests == 1


async def test_the_request_asks_for_the_schema_deterministically(voter) -> None:
    v, fake = voter
    await v.vote(PROMPT, PRICE)
    body = fake.last_body
    if v.provider == "openai":
        assert body["temperature"] == 0
        assert body["response_format"]["json_schema"]["strict"] is True
        assert body["max_completion_tokens"] == MAX_OUTPUT_TOKENS
    elif v.provider == "anthropic":
        assert body["max_tokens"] == MAX_OUTPUT_TOKENS
        assert body["tool_choice"] == {"type": "tool", "name": "cast_vote"}
        assert body["tools"][0]["input_schema"]["required"] == [
            "action",
            "confidence",
            "reasoning",
            "cited_indicators",
        ]
    else:
        config = body["generationConfig"]
        assert config["temperature"] == 0 and config["responseMimeType"] == "application/json"
        assert config["maxOutputTokens"] == MAX_OUTPUT_TOKENS
        assert "responseSchema" in config or "responseJsonSchema" in config
    assert "BTCUSDT" in str(body)


async def test_timeout_is_an_abstention(voter) -> None:
    v, fake = voter
    fake.reset(latency_s=3)
    result = await v.vote(PROMPT, PRICE)
    assert result.vote is None and result.abstain_reason == "timeout after 1.5s"


@pytest.mark.parametrize("malformed", ["text", "schema"])
async def test_invalid_output_is_an_abstention(voter, malformed: str) -> None:
    v, fake = voter
    fake.reset(malformed=malformed)
    result = await v.vote(PROMPT, PRICE)
    assert result.vote is None and result.abstain_reason is not None
    assert result.abstain_reason.startswith(("invalid output", "refused"))


async def test_429_then_success_is_a_vote(voter) -> None:
    v, fake = voter
    fake.reset(statuses_first=[429])
    result = await v.vote(PROMPT, PRICE)
    assert result.vote is not None and fake.requests == 2


async def test_retry_after_is_honoured_within_the_deadline(voter) -> None:
    v, fake = voter
    fake.reset(statuses_first=[429], retry_after="0.5")
    result = await v.vote(PROMPT, PRICE)
    assert result.vote is not None and fake.requests == 2 and result.latency_ms >= 500


async def test_a_retry_after_past_the_deadline_is_not_waited_for(voter) -> None:
    v, fake = voter
    fake.reset(statuses_first=[429], retry_after="5")
    result = await v.vote(PROMPT, PRICE)
    assert result.abstain_reason == "http 429" and fake.requests == 1
    assert result.latency_ms < 1000


async def test_persistent_500_abstains_within_the_deadline(voter) -> None:
    v, fake = voter
    fake.reset(always_status=500)
    result = await v.vote(PROMPT, PRICE)
    assert result.vote is None and result.abstain_reason in ("http 500", "timeout after 1.5s")
    assert fake.requests >= 2 and result.latency_ms < 2000


async def test_400_is_not_retried(voter) -> None:
    v, fake = voter
    fake.reset(always_status=400)
    result = await v.vote(PROMPT, PRICE)
    assert result.abstain_reason == "http 400" and fake.requests == 1


async def test_refusal_is_an_abstention(voter) -> None:
    v, fake = voter
    fake.reset(refuse=True)
    result = await v.vote(PROMPT, PRICE)
    assert result.vote is None and (result.abstain_reason or "").startswith("refused")


def test_unconfigured_providers_are_not_built() -> None:
    assert build_voter("openai", "gpt-4o-mini", Settings()) is None


async def test_any_openai_compatible_server_by_base_url(llm_fakes: RunningFakes) -> None:
    settings = Settings(openai_compatible_base_url=f"{llm_fakes.url}/v1", llm_timeout_s=1.5)
    assert settings.configured_llm_providers() == ["openai_compatible"]
    voter = build_voter("openai_compatible", "llama3.1", settings)
    assert voter is not None
    try:
        result = await voter.vote(PROMPT, FREE)
    finally:
        await voter.aclose()
    assert result.provider == "openai_compatible" and result.vote is not None
    assert result.cost_usd == 0
    assert llm_fakes.openai.last_body["max_tokens"] == MAX_OUTPUT_TOKENS
    assert llm_fakes.openai.last_body["model"] == "llama3.1"
