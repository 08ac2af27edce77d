"""Decisions: indicators plus the LLM panel through the real SDKs and the sandbox's candles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import func, select

from app.bots.strategy import Strategy, Voter
from app.core.locks import NamedLocks
from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.governor import InProcessGovernor
from app.integrations.llm.registry import VoterPool
from app.models import Bot, BotVersion, Decision, LlmVote, User
from app.trading.decide import DecisionMaker
from app.trading.market_data import MarketData, MemoryCandleCache, RedisCandleCache
from tests.conftest import REDIS_URL, require_service
from tests.fakes import RunningFakes
from tests.helpers import headers, new_principal
from tests.sandbox_server import SandboxServer

NOW = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)
PANEL = [
    Voter(provider="openai", model="gpt-4o-mini"),
    Voter(provider="anthropic", model="claude-haiku-4-5"),
    Voter(provider="gemini", model="gemini-2.5-flash"),
]


@pytest.fixture
async def maker(
    app: FastAPI, settings: Settings, sandbox: SandboxServer, llm_fakes: RunningFakes
) -> AsyncIterator[DecisionMaker]:
    redis = Redis.from_url(REDIS_URL) if settings.redis_url else None
    llm_settings = settings.model_copy(
        update={
            **Settings(**llm_fakes.settings_overrides()).model_dump(
                include=set(llm_fakes.settings_overrides())
            ),
            "llm_timeout_s": 1.5,
        }
    )
    clients = BinanceClients(
        InProcessGovernor(6000), api_url=sandbox.url, rules_ttl_s=300, idle_s=300
    )
    voters = VoterPool(llm_settings)
    locks = NamedLocks(redis)
    market = MarketData(clients, MemoryCandleCache(), locks)
    yield DecisionMaker(app.state.runtime.sessionmaker, market, voters, locks)
    await voters.aclose()
    await clients.close()
    if redis is not None:
        await redis.aclose()


async def bot_version(app: FastAPI, **strategy: object) -> BotVersion:
    chosen = Strategy(voters=PANEL, **strategy)  # type: ignore[arg-type]
    async with app.state.runtime.sessionmaker() as session:
        owner = User(kind="developer", display_name="dev")
        session.add(owner)
        await session.flush()
        bot = Bot(
            owner_user_id=owner.id, name="b", description="", status="active", current_version=1
        )
        session.add(bot)
        await session.flush()
        version = BotVersion(
            bot_id=bot.id,
            version=1,
            strategy=chosen.model_dump(mode="json"),
            config_hash=chosen.config_hash(),
        )
        session.add(version)
        await session.commit()
        return version


async def votes_of(app: FastAPI, decision: Decision) -> dict[str, LlmVote]:
    async with app.state.runtime.sessionmaker() as session:
        rows = await session.scalars(select(LlmVote).where(LlmVote.decision_id == decision.id))
        return {v.provider: v for v in rows}


async def test_all_voters_agree(app: FastAPI, maker: DecisionMaker) -> None:
    version = await bot_version(app)
    decision = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW)
    assert decision.candle_open_at == datetime(2026, 11, 20, 11, tzinfo=UTC)
    assert decision.action == "BUY" and decision.fallback_reason is None
    votes = await votes_of(app, decision)
    assert set(votes) == {"openai", "anthropic", "gemini"}
    assert all(v.action == "BUY" and v.confidence == Decimal("0.8") for v in votes.values())
    assert all(v.tokens_in == 120 and v.cost_usd > 0 for v in votes.values())
    expected = ((decision.indicator_score + 3 * Decimal("0.8")) / 4).quantize(Decimal("0.0001"))
    assert decision.combined_score == expected
    assert set(decision.indicators) == {
        "rsi",
        "macd",
        "ema_cross",
        "sma_cross",
        "bbands",
        "atr",
        "volume",
    }
    assert decision.rule_version == "ensemble-v1"
    assert decision.rule_params["prompt_version"] == "vote-v1"


async def test_split_vote_with_confident_opposites_holds(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes
) -> None:
    llm_fakes.openai.reset(
        vote={"action": "BUY", "confidence": 0.9, "reasoning": "up", "cited_indicators": []}
    )
    llm_fakes.anthropic.reset(
        vote={
            "action": "SELL",
            "confidence": 0.9,
            "reasoning": "down",
            "cited_indicators": ["macd"],
        }
    )
    llm_fakes.gemini.reset(
        vote={"action": "HOLD", "confidence": 0.5, "reasoning": "unclear", "cited_indicators": []}
    )
    decision = await maker.decide((await bot_version(app)).id, "ETHUSDT", "1h", now=NOW)
    assert decision.action == "HOLD" and "conflict" in (decision.fallback_reason or "")
    votes = await votes_of(app, decision)
    assert votes["anthropic"].reasoning == "down" and votes["anthropic"].cited_indicators == [
        "macd"
    ]


async def test_a_voter_that_times_out_abstains(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes
) -> None:
    llm_fakes.gemini.reset(latency_s=3)
    decision = await maker.decide((await bot_version(app)).id, "BTCUSDT", "1h", now=NOW)
    votes = await votes_of(app, decision)
    assert votes["gemini"].action is None and votes["gemini"].abstain_reason == "timeout after 1.5s"
    # Two answers meet the quorum; the abstainer is left out of the average.
    expected = ((decision.indicator_score + 2 * Decimal("0.8")) / 3).quantize(Decimal("0.0001"))
    assert decision.combined_score == expected and decision.action == "BUY"


async def test_invalid_json_and_a_429_then_success(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes
) -> None:
    llm_fakes.openai.reset(malformed="text")
    llm_fakes.anthropic.reset(statuses_first=[429])
    decision = await maker.decide((await bot_version(app)).id, "BTCUSDT", "1h", now=NOW)
    votes = await votes_of(app, decision)
    assert (votes["openai"].abstain_reason or "").startswith("invalid output")
    assert votes["anthropic"].action == "BUY" and llm_fakes.anthropic.requests == 2


async def test_every_voter_fails_and_the_fallback_applies(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes
) -> None:
    for fake in llm_fakes.all:
        fake.reset(always_status=500)
    held = await maker.decide((await bot_version(app)).id, "BTCUSDT", "1h", now=NOW)
    assert held.action == "HOLD"
    assert held.fallback_reason == "quorum not met: 0 of 2 required LLM votes; fallback hold"
    votes = await votes_of(app, held)
    assert {v.abstain_reason for v in votes.values()} <= {"http 500", "timeout after 1.5s"}
    alone = await maker.decide(
        (await bot_version(app, ensemble={"fallback": "indicators_only"})).id,
        "BTCUSDT",
        "1h",
        now=NOW,
    )
    assert alone.combined_score == alone.indicator_score
    assert "fallback indicators_only" in (alone.fallback_reason or "")


async def test_an_exhausted_budget_means_indicators_only_until_the_next_day(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes
) -> None:
    version = await bot_version(app, llm_daily_budget_usd=Decimal("0.0001"))
    first = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW)
    assert first.fallback_reason is None
    asked = [fake.requests for fake in llm_fakes.all]
    second = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW + timedelta(hours=1))
    assert [fake.requests for fake in llm_fakes.all] == asked  # no LLM call
    assert "daily LLM budget of 0.0001 USD spent" in (second.fallback_reason or "")
    assert second.combined_score == second.indicator_score
    assert await votes_of(app, second) == {}
    next_day = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW + timedelta(days=1))
    assert next_day.fallback_reason is None


async def test_fifty_concurrent_calls_make_one_decision_and_one_request_per_voter(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes, sandbox: SandboxServer
) -> None:
    version = await bot_version(app)
    klines_before = sandbox.requests().get("GET /api/v3/klines", 0)
    decisions = await asyncio.gather(
        *(maker.decide(version.id, "SOLUSDT", "15m", now=NOW) for _ in range(50))
    )
    assert len({d.id for d in decisions}) == 1
    assert [fake.requests for fake in llm_fakes.all] == [1, 1, 1]
    assert sandbox.requests().get("GET /api/v3/klines", 0) - klines_before == 1
    async with app.state.runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Decision)) == 1
        assert await session.scalar(select(func.count()).select_from(LlmVote)) == 3


async def test_candles_are_shared_through_redis_across_processes(sandbox: SandboxServer) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    redis = Redis.from_url(REDIS_URL)
    await redis.delete("botmarket:candles:BNBUSDT:5m")
    clients = BinanceClients(
        InProcessGovernor(6000), api_url=sandbox.url, rules_ttl_s=300, idle_s=300
    )
    try:
        processes = [
            MarketData(clients, RedisCandleCache(redis), NamedLocks(redis)) for _ in range(2)
        ]
        before = sandbox.requests().get("GET /api/v3/klines", 0)
        first, second = await asyncio.gather(
            *(p.closed_candles("BNBUSDT", "5m", 100, now=NOW) for p in processes)
        )
        assert first == second and len(first) == 100
        assert first[-1].open_time == datetime(2026, 11, 20, 11, 55, tzinfo=UTC)
        assert sandbox.requests().get("GET /api/v3/klines", 0) - before == 1
    finally:
        await clients.close()
        await redis.aclose()


async def test_renters_see_the_decision_with_every_vote(
    app: FastAPI,
    maker: DecisionMaker,
    llm_fakes: RunningFakes,
    developer_key: str,
    marketplace_key: str,
) -> None:
    llm_fakes.gemini.reset(latency_s=3)
    principal = new_principal()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        bot = await http.post(
            "/api/v1/bots",
            json={
                "name": "panel",
                "strategy": {"voters": [v.model_dump(mode="json") for v in PANEL]},
            },
            headers=headers(developer_key),
        )
        sub = await http.post(
            "/api/v1/subscriptions",
            json={
                "bot_id": bot.json()["id"],
                "symbol": "BTCUSDT",
                "timeframe": "1h",
                "mode": "paper",
                "quote_amount": "50",
            },
            headers=headers(marketplace_key, principal),
        )
        decision = await maker.decide(bot.json()["version_id"], "BTCUSDT", "1h", now=NOW)
        page = await http.get(
            f"/api/v1/subscriptions/{sub.json()['id']}/decisions",
            headers=headers(marketplace_key, principal),
        )
    (shown,) = page.json()["items"]
    assert shown["id"] == decision.id and shown["action"] == decision.action
    assert shown["indicators"]["rsi"]["signal"] == decision.indicators["rsi"]["signal"]
    assert [v["provider"] for v in shown["votes"]] == ["anthropic", "gemini", "openai"]
    votes = {v["provider"]: v for v in shown["votes"]}
    assert votes["openai"]["reasoning"] == "RSI oversold while the trend turns up."
    assert votes["gemini"]["action"] is None
    assert votes["gemini"]["abstain_reason"] == "timeout after 1.5s"


async def test_a_bot_without_voters_decides_on_indicators_and_says_so(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes
) -> None:
    async with app.state.runtime.sessionmaker() as session:
        version = await session.get(BotVersion, (await bot_version(app)).id)
        version.strategy = {**version.strategy, "voters": []}
        await session.commit()
    decision = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW)
    assert decision.fallback_reason == "no LLM voter configured for this bot: indicators only"
    assert decision.combined_score == decision.indicator_score
    assert [fake.requests for fake in llm_fakes.all] == [0, 0, 0]
