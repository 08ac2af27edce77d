"""`botmarket verify` against the real API (a uvicorn process's worth: the app over HTTP) and
the sandbox exchange's klines, on chains built by real decisions. A clean chain verifies; an
edit in the database makes it fail at the edited seq, whether the insider leaves the hashes
alone or recomputes them all and re-signs the head (then only the recomputation, or a head
recorded earlier, can tell)."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ChainHead, ChainLink, Decision, DecisionPrompt, LlmVote
from app.subscriptions import repository as subscriptions
from app.trading.decide import DecisionMaker
from app.verification import repository
from app.verification.canonical import GENESIS_HASH, chain_hash, head_message
from app.verification.service import record_of
from app.verification.verifier import Report, verify
from tests.events.stream_client import served
from tests.helpers import headers
from tests.sandbox_server import SandboxServer
from tests.trading.test_decide import NOW, bot_version

ROOT = Path(__file__).parents[2]
TAMPERED_SEQ = 2

Tamper = Callable[[AsyncSession, Decision], Awaitable[None]]


@pytest.fixture
async def chain(app: FastAPI, maker: DecisionMaker) -> list[Decision]:
    """Three decisions of one bot on consecutive hourly candles, chained as they are made."""
    version = await bot_version(app)
    return [
        await maker.decide(version.id, "BTCUSDT", "1h", now=NOW + timedelta(hours=hour))
        for hour in range(3)
    ]


@pytest.fixture
async def api(app: FastAPI, developer_key: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers(developer_key)
    ) as http:
        yield http


async def verified(
    api: httpx.AsyncClient, sandbox: SandboxServer, bot_id: str, head_hash: str | None = None
) -> Report:
    async with httpx.AsyncClient(base_url=sandbox.url) as exchange:
        return await verify(api, exchange, bot_id, head_hash=head_hash)


async def bot_of(app: FastAPI, decision: Decision) -> str:
    async with app.state.runtime.sessionmaker() as session:
        link = await session.get(ChainLink, decision.id)
    assert link is not None
    return link.bot_id


async def tampered(app: FastAPI, decision: Decision, edit: Tamper, rechain: bool) -> None:
    """`edit` the stored decision; with `rechain`, then recompute every hash and re-sign the
    head as an insider holding the database and the signing key would."""
    sessionmaker = app.state.runtime.sessionmaker
    async with sessionmaker() as session:
        stored = await session.get(Decision, decision.id)
        assert stored is not None
        bot_id = await bot_of(app, decision)
        await edit(session, stored)
        await session.commit()
        if rechain:
            await rechained(session, app, bot_id)
            await session.commit()


async def rechained(session: AsyncSession, app: FastAPI, bot_id: str) -> None:
    rows = await repository.links_page(session, bot_id, 0, 1000)
    votes: dict[str, list[LlmVote]] = {decision.id: [] for _, decision in rows}
    for vote in await subscriptions.votes_of(session, list(votes)):
        votes[vote.decision_id].append(vote)
    previous = GENESIS_HASH
    for seq, (link, decision) in enumerate(rows, start=1):
        link.seq, link.prev_hash = seq, previous
        link.hash = previous = chain_hash(previous, record_of(link, decision, votes[decision.id]))
    head = await session.get(ChainHead, bot_id)
    assert head is not None
    head.seq, head.hash = len(rows), previous
    signed = app.state.runtime.signing.sign(
        head_message(bot_id, head.seq, head.hash, head.signed_at)
    )
    head.signature = base64.b64encode(signed.signature).decode()


async def sell_instead(session: AsyncSession, decision: Decision) -> None:
    vote = await session.scalar(
        select(LlmVote).where(LlmVote.decision_id == decision.id, LlmVote.seat == 0)
    )
    assert vote is not None and vote.action == "BUY"
    vote.action = "SELL"


async def higher_rsi(session: AsyncSession, decision: Decision) -> None:
    indicators = dict(decision.indicators)
    indicators["rsi"] = {**indicators["rsi"], "value": indicators["rsi"]["value"] + 1}
    decision.indicators = indicators


async def other_candles(session: AsyncSession, decision: Decision) -> None:
    # The digest of candles that are not the exchange's: the record claims other prices.
    decision.candles_sha256 = "ab" * 32


async def decided_before_the_close(session: AsyncSession, decision: Decision) -> None:
    decision.created_at = decision.candle_open_at + timedelta(minutes=30)


async def deleted(session: AsyncSession, decision: Decision) -> None:
    for table in (ChainLink, LlmVote, DecisionPrompt):
        await session.execute(delete(table).where(table.decision_id == decision.id))
    await session.execute(delete(Decision).where(Decision.id == decision.id))


async def test_a_clean_chain_verifies_from_the_command_line(
    app: FastAPI, developer_key: str, sandbox: SandboxServer, chain: list[Decision]
) -> None:
    bot_id = await bot_of(app, chain[0])
    async with served(app) as address:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "verify",
            "--url",
            f"http://{address}",
            "--bot",
            bot_id,
            "--klines-url",
            sandbox.url,
            env={**os.environ, "PYTHONPATH": str(ROOT), "BOTMARKET_API_KEY": developer_key},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
    assert process.returncode == 0, out.decode() + err.decode()
    assert f"bot {bot_id}: 3 decisions checked (seq 1-3)" in out.decode()
    assert "VERIFIED" in out.decode()
    assert "3/3 decisions" in err.decode()  # the progress bar's last state


@pytest.mark.parametrize(
    ("edit", "rechain", "reason"),
    [
        (sell_instead, False, "its hash is not the SHA-256"),
        (sell_instead, True, "its votes give HOLD"),
        (higher_rsi, True, "indicator rsi value"),
        (other_candles, True, "candle digest"),
        (decided_before_the_close, True, "look-ahead"),
        (deleted, False, f"seq {TAMPERED_SEQ} is missing"),
    ],
    ids=["vote", "vote-rechained", "indicator", "candle", "look-ahead", "deleted"],
)
async def test_an_edit_fails_at_its_seq(
    app: FastAPI,
    api: httpx.AsyncClient,
    sandbox: SandboxServer,
    chain: list[Decision],
    edit: Tamper,
    rechain: bool,
    reason: str,
) -> None:
    bot_id = await bot_of(app, chain[0])
    klines_before = sandbox.requests().get("GET /api/v3/klines", 0)
    assert (await verified(api, sandbox, bot_id)).ok
    # The three windows overlap: one request reads them all.
    assert sandbox.requests().get("GET /api/v3/klines", 0) - klines_before == 1
    await tampered(app, chain[TAMPERED_SEQ - 1], edit, rechain)
    report = await verified(api, sandbox, bot_id)
    assert report.failure is not None and report.failure.seq == TAMPERED_SEQ, report.summary()
    assert reason in report.failure.reason
    assert report.checked == TAMPERED_SEQ - 1


async def test_a_rewritten_chain_is_caught_by_a_head_recorded_earlier(
    app: FastAPI, api: httpx.AsyncClient, sandbox: SandboxServer, chain: list[Decision]
) -> None:
    bot_id = await bot_of(app, chain[0])
    recorded = (await api.get(f"/api/v1/bots/{bot_id}/chain")).json()["hash"]
    assert (await verified(api, sandbox, bot_id, head_hash=recorded)).ok
    # A decision removed and the rest renumbered and re-signed: consistent in itself.
    await tampered(app, chain[TAMPERED_SEQ - 1], deleted, rechain=True)
    assert (await verified(api, sandbox, bot_id)).ok
    report = await verified(api, sandbox, bot_id, head_hash=recorded)
    assert report.failure is not None and report.failure.seq is None
    assert f"the recorded head {recorded} is not in the chain" in report.failure.reason


async def test_a_forged_head_or_an_unchained_decision_fails(
    app: FastAPI, api: httpx.AsyncClient, sandbox: SandboxServer, chain: list[Decision]
) -> None:
    bot_id = await bot_of(app, chain[0])
    async with app.state.runtime.sessionmaker() as session:
        head = await session.get(ChainHead, bot_id)
        assert head is not None
        genuine, head.signature = head.signature, base64.b64encode(b"\0" * 64).decode()
        await session.commit()
    report = await verified(api, sandbox, bot_id)
    assert report.failure is not None and report.failure.seq == 3
    assert "signature does not verify" in report.failure.reason
    async with app.state.runtime.sessionmaker() as session:
        head = await session.get(ChainHead, bot_id)
        assert head is not None
        head.signature = genuine
        # A decision counted by the track record that the chain does not hold.
        extra = await session.get(Decision, chain[0].id)
        assert extra is not None
        session.add(
            Decision(
                bot_version_id=extra.bot_version_id,
                symbol=extra.symbol,
                timeframe=extra.timeframe,
                candle_open_at=extra.candle_open_at - timedelta(hours=5),
                indicators={},
                indicator_score=0,
                combined_score=0,
                action="SELL",
                rule_version=extra.rule_version,
                rule_params=extra.rule_params,
            )
        )
        await session.commit()
    report = await verified(api, sandbox, bot_id)
    assert report.failure is not None and report.failure.seq is None, report.summary()
    assert "the track record counts decisions" in report.failure.reason
    assert report.checked == 3
