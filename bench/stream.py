"""The market-stream process under a steady flood of prices: its CPU, memory and the time
from a crossing price to its exit job's send.

It sets up a fresh MariaDB database (dropped after) and Redis db --redis-db (flushed; the
price book), seeds in bulk one bot and --positions renters' active subscriptions spread over
--symbols synthetic symbols and 3 timeframes, each with an open position and a 5% stop-loss,
and starts a Binance-shaped market-stream server of its own in a child process (the sandbox
serves four symbols at one update a second; this one sends every subscribed bookTicker
stream --rate times a second, answering SUBSCRIBE as Binance does). The stream flows then
run in this process as `botmarket stream` runs them: the lease held, the stream set reread
from the database every `STREAM_REFRESH_S`, the exit index read once and kept current from
the position events, prices flushed to Redis, exit jobs handed to a recording queue instead
of the broker. After a warm-up (every stream subscribed and speaking, the index read),
every --cross-every seconds the server sends one symbol's price through its positions'
stops, once; halfway through, the index is read whole again, as its safety reread does
every `EXIT_RELOAD_S` (before, every refresh reread it on the loop: the p99's cause).

Reported: messages sent a second, one refresh's time (the stream set reread), the index's
full read (in the window, beside the prices), the process's CPU share of one core and peak
RSS (VmHWM) over the measured window, the event loop's lag (how late a 10-ms timer fires:
p99/max, what a price waits behind), and per crossing position the time from the server's
send of the crossing price to the exit job's send (p50/p99/max). Not measured here (see
docs/performance.md): candle close to decision start, fills, REST weight, and the polling
path's walk on the same positions. The last line is one JSON object with every figure, also
written to bench/results/stream.json.

Usage: python bench/stream.py [--symbols 200] [--positions 10000] [--rate 10] [--seconds 20]
Needs MariaDB (root@127.0.0.1:3306) and Redis (127.0.0.1:6379) running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import resource
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import free_port, fresh_database  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from tick import STRATEGY, peak_rss_mb, percentile  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

from app.bots.strategy import Strategy  # noqa: E402
from app.core.db import create_engine, create_sessionmaker, new_id  # noqa: E402
from app.core.migrations import migrate  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.market_streams.flows import MarketStreamFlows  # noqa: E402
from app.market_streams.lease import Lease  # noqa: E402
from app.market_streams.prices import RedisPriceBook  # noqa: E402
from app.models import Bot, BotVersion, Position, Subscription, User  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "stream.json"
TIMEFRAMES = ("1m", "15m", "1h")
ENTRY = Decimal(100)
STOP_LOSS_PCT = "5"  # stops at 95
CROSSING_PRICE = "90"


def symbol_names(count: int) -> list[str]:
    return [f"S{n:03d}USDT" for n in range(count)]


# -- the market-stream server ----------------------------------------------------------------


def serve_market(port: int, rate: float, cross_every: float, start: Any, done: Any) -> None:
    """Child process: bookTicker frames for every subscribed stream `rate` times a second;
    once `start` is set, one symbol's crossing price every `cross_every` s. Asked on the pipe
    `done`, it answers the crossings (symbol, epoch s of its send) and the frames it sent
    since `start` over the seconds since."""
    asyncio.run(_market(port, rate, cross_every, start, done))


async def _market(port: int, rate: float, cross_every: float, start: Any, done: Any) -> None:
    connections: dict[ServerConnection, set[str]] = {}
    crossings: list[tuple[str, float]] = []
    updates = 0

    async def handler(ws: ServerConnection) -> None:
        connections[ws] = set()
        try:
            async for raw in ws:
                request = json.loads(raw)
                if request["method"] == "SUBSCRIBE":
                    connections[ws].update(request["params"])
                elif request["method"] == "UNSUBSCRIBE":
                    connections[ws].difference_update(request["params"])
                await ws.send(json.dumps({"result": None, "id": request["id"]}))
        finally:
            del connections[ws]

    def frame(stream: str, price: str) -> str:
        nonlocal updates
        updates += 1
        symbol = stream.partition("@")[0].upper()
        data = {"u": updates, "s": symbol, "b": price, "B": "1", "a": price, "A": "1"}
        return json.dumps({"stream": stream, "data": data})

    async with serve(handler, "127.0.0.1", port):
        next_cross = None
        crossed: set[str] = set()
        started: tuple[float, int] | None = None
        while not done.poll():
            tick = time.monotonic()
            crossing = None
            if start.is_set():
                started = started or (tick, updates)
                next_cross = next_cross or tick + cross_every
                if tick >= next_cross:
                    next_cross += cross_every
                    crossing = True
            for ws, streams in list(connections.items()):
                for stream in streams:
                    if not stream.endswith("@bookTicker"):
                        continue  # klines stay silent: closes are not measured here
                    if crossing and stream not in crossed:
                        crossing = None
                        crossed.add(stream)
                        crossings.append((stream.partition("@")[0].upper(), time.time()))
                        message = frame(stream, CROSSING_PRICE)
                    else:
                        message = frame(stream, f"{100 + random.random():.2f}")
                    with contextlib.suppress(Exception):
                        await ws.send(message)
            await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - tick)))
        since, counted = started or (time.monotonic(), updates)
        done.send((crossings, updates - counted, time.monotonic() - since))


class ArrivalsNoted(MarketStreamFlows):
    """The stream flows, noting when each symbol's crossing price reaches them: the time from
    the server's send to the exit job's splits into the delivery and the flows' own work."""

    def __init__(self, *args: Any) -> None:
        self.arrivals: dict[str, float] = {}
        super().__init__(*args)

    def on_data(self, stream: str, data: object) -> None:
        if isinstance(data, dict) and data.get("b") == CROSSING_PRICE:
            self.arrivals.setdefault(data["s"], time.time())
        super().on_data(stream, data)


# -- seeding ---------------------------------------------------------------------------------


async def seed(database_url: str, symbols: list[str], positions: int) -> dict[str, str]:
    """One bot and `positions` renters, each with an active subscription holding a position;
    the subscriptions' symbols, by id."""
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    strategy = Strategy.model_validate(STRATEGY)
    developer = User(id=new_id(), kind="developer", display_name="bench developer")
    bot = Bot(
        id=new_id(),
        owner_user_id=developer.id,
        name="bench bot",
        description="",
        status="active",
        current_version=1,
    )
    version = BotVersion(
        id=new_id(),
        bot_id=bot.id,
        version=1,
        strategy=strategy.model_dump(mode="json"),
        config_hash=strategy.config_hash(),
    )
    renters, subs, held = [], [], []
    for n in range(positions):
        renter = User(id=new_id(), principal=f"bench-{n:05d}-{uuid.uuid4().hex[:8]}", kind="renter")
        symbol = symbols[n % len(symbols)]
        sub = Subscription(
            id=new_id(),
            user_id=renter.id,
            bot_id=bot.id,
            bot_version_id=version.id,
            symbol=symbol,
            timeframe=TIMEFRAMES[(n // len(symbols)) % len(TIMEFRAMES)],
            mode="paper",
            quote_amount=Decimal(50),
            risk={"stop_loss_pct": STOP_LOSS_PCT},
            status="active",
        )
        renters.append(renter)
        subs.append(sub)
        held.append(
            Position(
                subscription_id=sub.id,
                symbol=symbol,
                quantity=Decimal("0.5"),
                average_cost=ENTRY,
                peak_price=ENTRY,
            )
        )
    async with sessionmaker() as session:
        for batch in ([developer], [bot], [version], renters, subs, held):
            for start in range(0, len(batch), 2000):
                session.add_all(batch[start : start + 2000])
                await session.flush()
        await session.commit()
    await engine.dispose()
    return {sub.id: sub.symbol for sub in subs}


# -- measuring -------------------------------------------------------------------------------


async def sample_loop_lag(lags_ms: list[float], every_s: float = 0.01) -> None:
    """How late a timer of `every_s` fires, again and again: the loop held by other work."""
    while True:
        at = time.monotonic()
        await asyncio.sleep(every_s)
        lags_ms.append((time.monotonic() - at - every_s) * 1000)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    symbols = symbol_names(args.symbols)
    sub_symbols = await seed(database_url, symbols, args.positions)
    port = free_port()
    start, (done_here, done_there) = multiprocessing.Event(), multiprocessing.Pipe()
    market = multiprocessing.Process(
        target=serve_market, args=(port, args.rate, args.cross_every, start, done_there)
    )
    market.start()
    settings = Settings(database_url=database_url, binance_stream_url=f"ws://127.0.0.1:{port}")
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    redis = Redis.from_url(f"redis://127.0.0.1:6379/{args.redis_db}")
    await redis.flushdb()
    sent: list[tuple[float, str]] = []

    async def enqueue(name: str, payload: dict[str, Any]) -> None:
        if name == "trading.exit":
            sent.append((time.time(), payload["subscription_id"]))

    lease = Lease(sessionmaker, "bench", settings.stream_lease_s)
    assert await lease.acquire()
    flows = ArrivalsNoted(sessionmaker, settings, enqueue, RedisPriceBook(redis), lease)
    running = asyncio.create_task(flows.run())
    renewing = asyncio.create_task(_renew(lease, settings.stream_lease_s / 3))
    try:
        wanted = args.symbols * (1 + len(TIMEFRAMES))
        warm_from = time.monotonic()
        while len(flows.pool.subscribed) < wanted:
            assert time.monotonic() - warm_from < 120, "the streams were not subscribed in 2 min"
            await asyncio.sleep(0.5)
        while len(flows.exits) < args.positions:
            assert time.monotonic() - warm_from < 120, "the exit index was not read in 2 min"
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # every stream speaking
        refresh_ms = []
        for _ in range(3):  # one refresh's time, beside the process's own
            refresh_from = time.monotonic()
            await flows.refresh()
            refresh_ms.append((time.monotonic() - refresh_from) * 1000)
        lags_ms: list[float] = []
        sampling = asyncio.create_task(sample_loop_lag(lags_ms))
        start.set()
        cpu_from, wall_from = cpu_s(), time.monotonic()
        await asyncio.sleep(args.seconds / 2)
        load_from = time.monotonic()
        await flows.load_exits()
        load_ms = (time.monotonic() - load_from) * 1000
        await asyncio.sleep(max(0.0, args.seconds - (time.monotonic() - wall_from)))
        cpu, wall = cpu_s() - cpu_from, time.monotonic() - wall_from
        sampling.cancel()
        await asyncio.sleep(1)  # the last crossing's jobs
    finally:
        running.cancel()
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        done_here.send(True)
        crossings, messages, sent_s = done_here.recv() if done_here.poll(10) else ([], 0, 1.0)
        market.join(10)
        await redis.flushdb()
        await redis.aclose()
        await engine.dispose()
    crossed_at = dict(crossings)
    latencies, handled = [], []
    seen: set[str] = set()
    for at, sub_id in sent:
        symbol = sub_symbols[sub_id]
        if symbol in crossed_at and sub_id not in seen and at >= crossed_at[symbol]:
            seen.add(sub_id)
            latencies.append((at - crossed_at[symbol]) * 1000)
            handled.append((at - flows.arrivals[symbol]) * 1000)
    delivered = [(flows.arrivals[s] - at) * 1000 for s, at in crossings if s in flows.arrivals]
    expected = sum(1 for s in sub_symbols.values() if s in crossed_at)
    return {
        "bench": "stream",
        "symbols": args.symbols,
        "positions": args.positions,
        "streams": wanted,
        "rate_per_symbol_s": args.rate,
        "seconds": round(wall, 1),
        "messages_per_s": round(messages / sent_s),
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "peak_rss_mb": round(peak_rss_mb(os.getpid()), 1),
        "refresh_ms_median": round(sorted(refresh_ms)[1], 1),
        "index_full_read_ms": round(load_ms, 1),
        "loop_lag_ms": {
            "p99": round(percentile(lags_ms, 0.99), 1),
            "max": round(max(lags_ms), 1),
        },
        "crossings": len(crossings),
        "exits_expected": expected,
        "exits_sent": len(latencies),
        "crossing_to_exit_send_ms": _spread(latencies),
        # The two parts of it: the server's send to the price's arrival in the flows (per
        # crossing), and the arrival to the exit job's send (per position).
        "crossing_to_arrival_ms": _spread(delivered),
        "arrival_to_exit_send_ms": _spread(handled),
    }


def _spread(values_ms: list[float]) -> dict[str, float | None]:
    return {
        "p50": round(percentile(values_ms, 0.5), 1) if values_ms else None,
        "p99": round(percentile(values_ms, 0.99), 1) if values_ms else None,
        "max": round(max(values_ms), 1) if values_ms else None,
    }


async def _renew(lease: Lease, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await lease.renew()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=10.0, help="updates per symbol per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cross-every", type=float, default=1.0)
    parser.add_argument("--mariadb", default="mysql+asyncmy://root@127.0.0.1:3306/")
    parser.add_argument("--redis-db", type=int, default=14)
    args = parser.parse_args()
    with fresh_database(args.mariadb) as database_url:
        migrate(database_url)
        result = asyncio.run(measure(args, database_url))
    print(
        f"{result['symbols']} symbols, {result['positions']} positions: "
        f"{result['messages_per_s']} messages/s, CPU {result['cpu_share_of_one_core']:.0%} "
        f"of a core, RSS {result['peak_rss_mb']} MB, a refresh {result['refresh_ms_median']} ms, "
        f"the index read whole {result['index_full_read_ms']} ms, "
        f"loop lag {result['loop_lag_ms']} ms, "
        f"crossing to exit send "
        f"{result['crossing_to_exit_send_ms']} (arrival {result['crossing_to_arrival_ms']}, "
        f"arrival to send {result['arrival_to_exit_send_ms']}; {result['exits_sent']} of "
        f"{result['exits_expected']} exits)"
    )
    RESULTS.write_text(json.dumps(result, sort_keys=True) + "\n")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
