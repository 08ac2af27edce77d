"""A closed kline sends its groups' decide jobs at once, and beat's dispatch of the same
candle adds no second decision: the decision's claim makes whichever job comes second a
no-op."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.settings import Settings
from app.market_streams.flows import MarketStreamFlows
from app.market_streams.lease import Lease
from app.market_streams.prices import PriceBook
from app.models import Decision, Trade
from app.trading.decide import DecisionInFlight
from app.trading.flows import DueGroup, TradingFlows
from tests.fakes import RunningFakes
from tests.market_streams.conftest import StartStream, streaming, until
from tests.trading.conftest import NOW, Queue, count, make_bot, subscribe
from tests.trading.test_flows import run_jobs


async def test_the_streams_job_and_beats_dispatch_decide_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    developer_key: str,
    marketplace_key: str,
    stream_settings: Settings,
    prices: PriceBook,
    lease: Lease,
    llm_fakes: RunningFakes,
) -> None:
    trading, queue = flows
    bot = await make_bot(client, developer_key)
    subs = [await subscribe(client, marketplace_key, bot) for _ in range(3)]
    close = NOW.replace(minute=0, second=0)  # the 1h candle that closed before NOW
    streams = MarketStreamFlows(
        app.state.runtime.sessionmaker, stream_settings, queue, prices, lease
    )
    await streams.kline_closed("BTCUSDT", "1h", close)
    await streams.kline_closed("BTCUSDT", "1h", close)  # the same close again: not resent
    await trading.dispatch(NOW)  # beat's tick, before either job ran
    stream_job, beat_job = queue.named("trading.decide")
    assert stream_job == beat_job and len(stream_job["groups"]) == 1
    assert stream_job["groups"][0]["as_of"] == close.isoformat()
    queue.jobs.clear()
    outcomes = await asyncio.gather(
        *(
            trading.decide([DueGroup.from_job(g)])
            for g in (*stream_job["groups"], *beat_job["groups"])
        )
    )
    for outcome in outcomes:  # a job that met the claim retries (Celery would) and finds it made
        assert outcome.failed == {}
        if outcome.retry:
            assert all(isinstance(e, DecisionInFlight) for e in outcome.retry.values())
            assert (await trading.decide(list(outcome.retry))).retry == {}
    assert await count(app, Decision) == 1
    assert llm_fakes.openai.requests == 1
    await run_jobs(trading, queue)
    for sub in subs:
        assert await count(app, Trade, subscription_id=sub) == 1
    # The next dispatch and the next close of the same candle find it decided.
    await streams.kline_closed("BTCUSDT", "1h", close + timedelta(minutes=1))
    assert await trading.dispatch(NOW) == []
    assert queue.named("trading.decide") == []


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_closed_kline_from_the_stream_sends_its_decide_job_at_the_close(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    stream_settings: Settings,
    prices: PriceBook,
    lease: Lease,
) -> None:
    bot = await make_bot(client, developer_key)
    await subscribe(client, marketplace_key, bot, timeframe="1m")
    queue = Queue()
    async with streaming(app, stream_settings, queue, prices, lease):
        now = datetime.now(UTC)
        close = now.replace(second=0, microsecond=0) + timedelta(minutes=1)

        def sent_for_the_close() -> bool:
            return any(
                g["as_of"] == close.isoformat()
                for job in queue.named("trading.decide")
                for g in job["groups"]
            )

        await until(sent_for_the_close, within_s=(close - now).total_seconds() + 15)
        await asyncio.sleep(2)  # later frames of the same close send nothing more
    as_of = [g["as_of"] for job in queue.named("trading.decide") for g in job["groups"]]
    assert as_of.count(close.isoformat()) == 1


async def test_the_closes_missed_while_away_are_each_sent_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    stream_settings: Settings,
    prices: PriceBook,
    lease: Lease,
) -> None:
    bot = await make_bot(client, developer_key)
    await subscribe(client, marketplace_key, bot, timeframe="1m")
    queue = Queue()
    streams = MarketStreamFlows(
        app.state.runtime.sessionmaker, stream_settings, queue, prices, lease
    )
    first = NOW.replace(second=0)
    await streams.kline_closed("BTCUSDT", "1m", first)
    # Back after three closes: the latest and the two missed are sent, oldest first.
    await streams.kline_closed("BTCUSDT", "1m", first + timedelta(minutes=3, seconds=20))
    await streams.kline_closed("BTCUSDT", "1m", first + timedelta(minutes=3))  # seen
    as_of = [g["as_of"] for job in queue.named("trading.decide") for g in job["groups"]]
    assert as_of == [(first + timedelta(minutes=m)).isoformat() for m in range(4)]


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_close_during_a_stream_outage_is_decided_once(
    app: FastAPI,
    flows: tuple[TradingFlows, Queue],
    lease: Lease,
    own_stream: StartStream,
) -> None:
    trading, beat_queue = flows
    async with own_stream(hold=False, timeframe="1m") as own:
        queue = own.queue
        # The symbol's streams fall silent over the next close: its closing frame is never sent.
        own.sandbox.admin("POST", "/sandbox/streams/pause", json={"symbol": "BTCUSDT"})
        now = datetime.now(UTC)
        close = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        await asyncio.sleep((close - now).total_seconds() + 3)
        assert close.isoformat() not in as_of_sent(queue)
        assert await lease.renew()  # as the process does: the wait outlasts the fixture's lease
        own.sandbox.admin(
            "POST", "/sandbox/streams/pause", json={"symbol": "BTCUSDT", "paused": False}
        )
        # The next candle's first frame tells the missed close.
        await until(lambda: close.isoformat() in as_of_sent(queue))
        await asyncio.sleep(2)
    assert as_of_sent(queue).count(close.isoformat()) == 1
    await assert_decided_once(app, trading, close, queue, beat_queue)


async def assert_decided_once(
    app: FastAPI, trading: TradingFlows, close: datetime, queue: Queue, beat_queue: Queue
) -> None:
    """Beat's dispatch of the close too: the decide jobs of the stream (in `queue`) and of
    beat make one decision of the candle that closed at `close` between them."""
    await trading.dispatch(close + timedelta(seconds=5))
    jobs = [*queue.named("trading.decide"), *beat_queue.named("trading.decide")]
    groups = [DueGroup.from_job(g) for job in jobs for g in job["groups"]]
    for group in [g for g in groups if g.as_of == close]:
        outcome = await trading.decide([group])
        assert outcome.failed == {} and outcome.retry == {}
    async with app.state.runtime.sessionmaker() as session:
        decided = await session.scalar(
            select(func.count())
            .select_from(Decision)
            .where(Decision.candle_open_at == close - timedelta(minutes=1))
        )
    assert decided == 1


def as_of_sent(queue: Queue) -> list[str]:
    """The closes of the decide jobs sent, one per group."""
    return [g["as_of"] for job in queue.named("trading.decide") for g in job["groups"]]
