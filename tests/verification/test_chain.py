"""Each bot's chain, built by real decisions (the sandbox's candles, the fake LLMs) on SQLite
and MariaDB, checked from the served JSON by an independent helper."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.core.settings import Settings
from app.models import DecisionPrompt, LlmVote, Subscription
from app.trading.candles import Candle
from app.trading.decide import DecisionMaker
from app.verification.canonical import candles_digest, prompt_digest
from app.verification.service import purge_prompts
from tests.api.test_contract import listed_bot, subscribe
from tests.helpers import headers, new_principal
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import ALWAYS_BUY
from tests.trading.test_decide import NOW, bot_version
from tests.verification.independent import ZEROS, check_chain, check_head
from workers.celery_app import celery_app
from workers.schedule import beat_schedule


async def served(client: httpx.AsyncClient, key: str, path: str) -> dict:
    response = await client.get(path, headers=headers(key))
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


async def whole_chain(client: httpx.AsyncClient, key: str, bot_id: str) -> list[dict]:
    """Every record, a page of two at a time."""
    records: list[dict] = []
    after: int | None = 0
    while after is not None:
        page = await served(client, key, f"/api/v1/bots/{bot_id}/decisions?after={after}&limit=2")
        records += page["items"]
        after = page["next_after"]
    return records


async def test_decisions_chain_and_the_head_verifies(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str, maker: DecisionMaker
) -> None:
    version = await bot_version(app)
    empty = await served(client, developer_key, f"/api/v1/bots/{version.bot_id}/chain")
    assert (empty["seq"], empty["hash"], empty["signature"]) == (0, ZEROS, None)
    made = [
        await maker.decide(version.id, "BTCUSDT", "1h", now=NOW + timedelta(hours=hour))
        for hour in range(3)
    ]
    records = await whole_chain(client, developer_key, version.bot_id)
    assert [r["decision_id"] for r in records] == [d.id for d in made]
    check_chain(records)
    head = await served(client, developer_key, f"/api/v1/bots/{version.bot_id}/chain")
    assert (head["seq"], head["hash"]) == (3, records[-1]["hash"])
    keys = (await served(client, developer_key, "/api/v1/signing-keys"))["keys"]
    assert [k["status"] for k in keys] == ["current"]
    check_head(head, keys)


async def test_a_record_holds_what_recomputes_its_decision(
    app: FastAPI,
    client: httpx.AsyncClient,
    marketplace_key: str,
    maker: DecisionMaker,
    sandbox: SandboxServer,
) -> None:
    version = await bot_version(app)
    decision = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW)
    (record,) = await whole_chain(client, marketplace_key, version.bot_id)
    window = record["candles"]
    assert window["last_open_at"] == "2026-11-20T11:00:00Z" == record["candle_open_at"]
    async with httpx.AsyncClient(base_url=sandbox.url) as exchange:
        klines = await exchange.get(
            "/api/v3/klines",
            params={
                "symbol": "BTCUSDT",
                "interval": "1h",
                "endTime": int(decision.candle_open_at.timestamp() * 1000),
                "limit": window["count"],
            },
        )
    candles = [Candle.from_kline(row) for row in klines.json()]
    assert candles[0].open_time == decision.candles_first_open_at
    assert candles_digest(candles) == window["sha256"]
    async with app.state.runtime.sessionmaker() as session:
        prompt = await session.get(DecisionPrompt, decision.id)
    assert prompt is not None
    assert [v["seat"] for v in record["votes"]] == [0, 1, 2]
    assert [v["provider"] for v in record["votes"]] == ["openai", "anthropic", "gemini"]
    for vote in record["votes"]:
        assert vote["prompt_sha256"] == prompt_digest(prompt.system, prompt.user)
        assert '"BUY"' in vote["response_text"] and vote["action"] == "BUY"
        assert vote["confidence"] == "0.8" and vote["tokens_in"] == 120
        assert vote["cost_usd"] != "0" and vote["latency_ms"] >= 0
    assert "prompt" not in record and "system" not in str(record["votes"])


async def test_the_renter_sees_the_window_and_every_vote_in_full(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    maker: DecisionMaker,
) -> None:
    bot = await listed_bot(client, developer_key, name="shown", strategy=ALWAYS_BUY)
    principal = new_principal()
    created = await subscribe(client, marketplace_key, principal, bot["id"], symbol="BTCUSDT")
    async with app.state.runtime.sessionmaker() as session:
        sub = await session.get(Subscription, created.json()["id"])
    assert sub is not None
    decision = await maker.decide(sub.bot_version_id, "BTCUSDT", "1h", now=NOW)
    shown = await client.get(
        f"/api/v1/subscriptions/{sub.id}/decisions", headers=headers(marketplace_key, principal)
    )
    (item,) = shown.json()["items"]
    assert item["candles"]["sha256"] == decision.candles_sha256
    assert item["candles"]["count"] == decision.candle_count
    (vote,) = item["votes"]
    assert vote["seat"] == 0 and len(vote["prompt_sha256"]) == 64
    assert vote["response_text"] and vote["tokens_in"] == 120 and vote["tokens_out"] > 0
    assert vote["cost_usd"] != "0" and vote["latency_ms"] >= 0


async def test_concurrent_decisions_of_one_bot_chain_without_gap_or_fork(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    processes: list[DecisionMaker],
) -> None:
    version = await bot_version(app)
    # Six candles decided at once by two processes with an engine each, three tasks each.
    await asyncio.gather(
        *(
            processes[hour % len(processes)].decide(
                version.id, "BTCUSDT", "1h", now=NOW + timedelta(hours=hour)
            )
            for hour in range(6)
        )
    )
    records = await whole_chain(client, developer_key, version.bot_id)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    check_chain(records)
    head = await served(client, developer_key, f"/api/v1/bots/{version.bot_id}/chain")
    assert (head["seq"], head["hash"]) == (6, records[-1]["hash"])
    check_head(head, (await served(client, developer_key, "/api/v1/signing-keys"))["keys"])


async def test_votes_keep_the_prompt_digest_after_its_text_is_purged(
    app: FastAPI, maker: DecisionMaker
) -> None:
    version = await bot_version(app)
    old = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW)
    new = await maker.decide(version.id, "BTCUSDT", "1h", now=NOW + timedelta(hours=1))
    sessionmaker = app.state.runtime.sessionmaker
    async with sessionmaker() as session:
        stored, kept = [await session.get(DecisionPrompt, d.id) for d in (old, new)]
        assert stored is not None and kept is not None
        # Stored 91 days and 89 days before the purge runs.
        stored.created_at, kept.created_at = NOW, NOW + timedelta(days=2)
        await session.commit()
    purged = await purge_prompts(sessionmaker, NOW + timedelta(days=91), timedelta(days=90))
    assert purged == 1
    async with sessionmaker() as session:
        assert await session.get(DecisionPrompt, old.id) is None
        assert await session.get(DecisionPrompt, new.id) is not None
        digests = await session.scalars(
            select(LlmVote.prompt_sha256).where(LlmVote.decision_id == old.id)
        )
        assert all(d == stored.sha256 for d in digests.all())


def test_beat_purges_prompts_every_hour(settings: Settings) -> None:
    celery_app.loader.import_default_modules()
    entry = beat_schedule(settings)["purge-prompts"]
    assert entry["task"] == "verification.purge_prompts" and entry["task"] in celery_app.tasks
    assert settings.prompt_retention_days == 90
