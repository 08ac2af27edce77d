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
from sqlalchemy import func, select, update

from app.bots.strategy import Strategy, Voter
from app.core.db import create_engine, create_sessionmaker
from app.core.locks import NamedLocks
from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.governor import InProcessGovernor
from app.integrations.llm.registry import VoterPool
from app.models import Bot, BotVersion, Decision, DecisionClaim, LlmVote, User
from app.trading.decide import DecisionMaker
from app.trading.market_data import MarketData, MemoryCandleCache, RedisCandleCache
from tests.api.test_contract import listed_bot
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
def llm_settings(settings: Settings, llm_fakes: RunningFakes) -> Settings:
    return settings.model_copy(
        update={
            **Settings(**llm_fakes.settings_overrides()).model_dump(
                include=set(llm_fakes.settings_overrides())
            ),
            "llm_timeout_s": 1.5,
        }
    )


@pytest.fixture
async def maker(
    app: FastAPI, settings: Settings, llm_settings: Settings, sandbox: SandboxServer
) -> AsyncIterator[DecisionMaker]:
    redis = Redis.from_url(REDIS_URL) if settings.redis_url else None
    clients = BinanceClients(
        InProcessGovernor(6000), api_url=sandbox.url, rules_ttl_s=300, idle_s=300
    )
    voters = VoterPool(llm_settings)
    locks = NamedLocks(redis)
    market = MarketData(clients, MemoryCandleCache(), locks)
    yield DecisionMaker(app.state.runtime.sessionmaker, market, voters, llm_settings)
    await voters.aclose()
    await clients.close()
    if redis is not None:
        await redis.aclose()


@pytest.fixture
async def processes(
    llm_settings: Settings, sandbox: SandboxServer
) -> AsyncIterator[list[DecisionMaker]]:
    """Two worker processes of the embedded default: an engine each, and no Redis."""
    engines = [create_engine(llm_settings.database_url, pool=False) for _ in range(2)]
    clients = BinanceClients(
        InProcessGovernor(6000), api_url=sandbox.url, rules_ttl_s=300, idle_s=300
    )
    pools = [VoterPool(llm_settings) for _ in engines]
    makers = []
    for engine, voters in zip(engines, pools, strict=True):
        locks = NamedLocks(None)
        market = MarketData(clients, MemoryCandleCache(), locks)
        makers.append(DecisionMaker(create_sessionmaker(engine), market, voters, llm_settings))
    yield makers
    for voters in pools:
        await voters.aclose()
    await clients.close()
    for engine in engines:
        await engine.dispose()


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


async def test_a_round_that_could_pass_the_budget_is_not_asked_until_the_next_day(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes
) -> None:
    for fake in llm_fakes.all:
        fake.reset(tokens_out=1000)
    # A round of this panel reserves about 0.011 USD and costs about 0.008.
    version = await bot_version(app, llm_daily_budget_usd=Decimal("0.015"))
    first = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW)
    assert first.fallback_reason is None
    asked = [fake.requests for fake in llm_fakes.all]
    second = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW + timedelta(hours=1))
    assert [fake.requests for fake in llm_fakes.all] == asked  # no LLM call
    assert (second.fallback_reason or "").startswith(
        "daily LLM budget of 0.015 USD reached: 0.0083 spent, 0.0000 reserved by rounds in "
        "flight, up to 0.011"
    )
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


async def test_two_processes_without_redis_make_one_llm_round(
    app: FastAPI, processes: list[DecisionMaker], llm_fakes: RunningFakes
) -> None:
    for fake in llm_fakes.all:
        fake.reset(latency_s=0.5)
    version = await bot_version(app)
    decisions = await asyncio.gather(
        *(p.decide(version.id, "BTCUSDT", "1h", now=NOW) for p in processes)
    )
    assert len({d.id for d in decisions}) == 1
    assert [fake.requests for fake in llm_fakes.all] == [1, 1, 1]


async def test_concurrent_decisions_of_one_bot_never_spend_past_its_budget(
    app: FastAPI, processes: list[DecisionMaker], llm_fakes: RunningFakes
) -> None:
    # Answers as long as a vote may be, so a round costs about what is reserved for it.
    for fake in llm_fakes.all:
        fake.reset(latency_s=0.3, tokens_in=1000, tokens_out=1000)
    budget = Decimal("0.03")  # room for two rounds of this panel, not three
    version = await bot_version(app, llm_daily_budget_usd=budget)
    groups = [(s, t) for s in ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT") for t in ("1h", "4h")]
    decisions = await asyncio.gather(
        *(
            processes[i % 2].decide(version.id, symbol, timeframe, now=NOW)
            for i, (symbol, timeframe) in enumerate(groups)
        )
    )
    async with app.state.runtime.sessionmaker() as session:
        costs = (await session.scalars(select(LlmVote.cost_usd))).all()
    assert 0 < sum(costs, Decimal(0)) <= budget
    refused = [d for d in decisions if "daily LLM budget" in (d.fallback_reason or "")]
    assert 0 < len(refused) < len(groups)


async def expire_claims(app: FastAPI) -> None:
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(
            update(DecisionClaim).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()


async def test_a_paused_owner_cannot_store_once_its_claim_is_taken_over(
    app: FastAPI, processes: list[DecisionMaker], llm_fakes: RunningFakes
) -> None:
    for fake in llm_fakes.all:
        fake.reset(latency_s=1)
    version = await bot_version(app)
    paused = asyncio.create_task(processes[0].decide(version.id, "BTCUSDT", "1h", now=NOW))
    for _ in range(250):  # until every voter has been asked (at most 5 s)
        if all(fake.requests for fake in llm_fakes.all):
            break
        await asyncio.sleep(0.02)
    await expire_claims(app)  # as if the first owner had stalled past its lease
    taken_over = await processes[1].decide(version.id, "BTCUSDT", "1h", now=NOW)
    assert (await paused).id == taken_over.id
    assert [fake.requests for fake in llm_fakes.all] == [2, 2, 2]
    async with app.state.runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(LlmVote)) == 3
        assert await session.scalar(select(func.count()).select_from(DecisionClaim)) == 0


async def claim(
    app: FastAPI, version: BotVersion, symbol: str, reserved: str, ttl_s: float
) -> None:
    async with app.state.runtime.sessionmaker() as session:
        session.add(
            DecisionClaim(
                bot_version_id=version.id,
                symbol=symbol,
                timeframe="1h",
                candle_open_at=datetime(2026, 11, 20, 11, tzinfo=UTC),
                attempt=1,
                expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s),
                reserved_usd=Decimal(reserved),
            )
        )
        await session.commit()


async def test_a_crashed_rounds_claim_and_reservation_expire(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes
) -> None:
    version = await bot_version(app, llm_daily_budget_usd=Decimal("1"))
    await claim(app, version, "BTCUSDT", "1", ttl_s=-1)  # its owner died mid-round
    await claim(app, version, "ETHUSDT", "1", ttl_s=-1)
    taken_over = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW)
    assert taken_over.fallback_reason is None
    assert [fake.requests for fake in llm_fakes.all] == [1, 1, 1]
    await claim(app, version, "SOLUSDT", "0.995", ttl_s=60)  # a live round elsewhere
    refused = await maker.decide(version.id, "BNBUSDT", "1h", now=NOW)
    assert "0.9950 reserved by rounds in flight" in (refused.fallback_reason or "")
    async with app.state.runtime.sessionmaker() as session:
        left = await session.scalars(select(DecisionClaim.symbol).order_by(DecisionClaim.symbol))
        assert left.all() == ["ETHUSDT", "SOLUSDT"]


async def test_an_unpriced_voter_of_an_old_version_is_not_asked(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes
) -> None:
    async with app.state.runtime.sessionmaker() as session:
        version = await session.get(BotVersion, (await bot_version(app)).id)
        version.strategy = {
            **version.strategy,
            "voters": [{"provider": "openai", "model": "gpt-unpriced", "weight": "1"}],
        }
        await session.commit()
    decision = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW)
    assert (await votes_of(app, decision))["openai"].abstain_reason == "model has no price"
    assert llm_fakes.openai.requests == 0


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
        bot = await listed_bot(
            http,
            developer_key,
            name="panel",
            strategy={"voters": [v.model_dump(mode="json") for v in PANEL]},
        )
        sub = await http.post(
            "/api/v1/subscriptions",
            json={
                "bot_id": bot["id"],
                "symbol": "BTCUSDT",
                "timeframe": "1h",
                "mode": "paper",
                "quote_amount": "50",
            },
            headers=headers(marketplace_key, principal),
        )
        decision = await maker.decide(bot["version_id"], "BTCUSDT", "1h", now=NOW)
        page = await http.get(
            f"/api/v1/subscriptions/{sub.json()['id']}/decisions",
            headers=headers(marketplace_key, principal),
        )
    (shown,) = page.json()["items"]
    assert shown["id"] == decision.id and shown["action"] == decision.action
    assert shown["indicators"]["rsi"]["signal"] == decision.indicators["rsi"]["signal"]
    # In the panel's seat order, as the chain records them.
    assert [v["provider"] for v in shown["votes"]] == ["openai", "anthropic", "gemini"]
    assert [v["seat"] for v in shown["votes"]] == [0, 1, 2]
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
