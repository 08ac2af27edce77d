"""The market-stream process under a steady flood of prices: its CPU, memory, the time from a
crossing price to its exit job's send, to the exit's order and its paper fill, from a candle's
close to its decide jobs' send, the REST weight it all costs, and beat's polling pass on the
same positions.

It sets up a fresh MariaDB database (dropped after) and Redis db --redis-db (flushed: the
price book and the broker), seeds in bulk one bot and --positions renters' active paper
subscriptions spread over --symbols synthetic symbols and 3 timeframes, each with an open
position and a 5% stop-loss, and starts a Binance-shaped market-stream server of its own in
a child process (the sandbox serves four symbols at one update a second; this one sends
every subscribed bookTicker stream --rate times a second, answering SUBSCRIBE as Binance
does, and on the same port answers the REST reads of a worker, counting their weight by
Binance's weights: the sandbox knows only its four symbols), and one real Celery worker of
the project's app (--concurrency children, the default queue: exits and beat's protect; the
decide jobs wait in their queue, no LLM behind them), its task starts and ends noted by
bench/stream_tasks.py. The stream flows then run in this process as `botmarket stream` runs
them: the lease held, the stream set reread from the database every `STREAM_REFRESH_S`, the
exit index read once and kept current from the position events, prices flushed to Redis,
jobs sent to the broker (`JobQueue`). After a warm-up (every stream subscribed and speaking,
the index read), every --cross-every seconds the server sends one symbol's price through its
positions' stops, and keeps it there; --close-after seconds in, it sends every kline
stream's closing update (x true) at once, as Binance does at an hour's turn, for the candle
each is in (its T in the future: a decide job is sent at once, whatever the clock); halfway
through, the index is read whole again, as its safety reread does every `EXIT_RELOAD_S`.
After the window, with the streams still up, it waits (at most --exits-wait s) for every
crossed position's exit to be run by the worker (through the fenced executor, paper mode,
the price from the price book); then it stops the streams, empties the price book and the
worker's queue (the exit jobs sent again while their first waited), and sends
`trading.protect` once.

Reported: messages sent a second, one refresh's time (the stream set reread), the index's
full read (in the window, beside the prices), the process's CPU share of one core and peak
RSS (VmHWM) over the measured window, the event loop's lag (how late a 10-ms timer fires:
p99/max, what a price waits behind); per crossing position the time from the server's send
of the crossing price to the exit job's send, split at the price's arrival, to the job's
start in the worker (task_prerun), to the exit order (the paper trade's row, written as its
attempt starts) and to its fill (the row's last update); per group the time from the
server's send of its closing kline to its decide job's send; the REST weight by endpoint
from the window's start to the last exit's run, a minute; and beat's polling pass: its walk
over the positions left open (task_prerun to task_postrun), its REST weight, and the worst
wait of a crossing on that path (the pass's interval and one walk). The last line is one
JSON object with every figure, also written to bench/results/stream.json.

Usage: python bench/stream.py [--symbols 200] [--positions 10000] [--rate 10] [--seconds 20]
                              [--close-after 5] [--concurrency 2] [--exits-wait 90]
Needs MariaDB (root@127.0.0.1:3306) and Redis (127.0.0.1:6379) running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import free_port, fresh_database  # noqa: E402
from redis import Redis as SyncRedis  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from stream_tasks import KEY as TASKS_KEY  # noqa: E402
from tick import STRATEGY, peak_rss_mb, percentile, process  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.datastructures import Headers  # noqa: E402
from websockets.http11 import Request, Response  # noqa: E402

from app.bots.strategy import Strategy  # noqa: E402
from app.core.db import create_engine, create_sessionmaker, new_id  # noqa: E402
from app.core.jobs import JobQueue  # noqa: E402
from app.core.migrations import migrate  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.integrations.binance.client import WEIGHTS  # noqa: E402
from app.market_streams.flows import MarketStreamFlows  # noqa: E402
from app.market_streams.lease import Lease  # noqa: E402
from app.market_streams.names import market_of  # noqa: E402
from app.market_streams.prices import REDIS_KEY, RedisPriceBook  # noqa: E402
from app.models import Bot, BotVersion, Position, Subscription, Trade, User  # noqa: E402
from app.trading.market_data import interval_ms  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "stream.json"
TIMEFRAMES = ("1m", "15m", "1h")
ENTRY = Decimal(100)
STOP_LOSS_PCT = "5"  # stops at 95
CROSSING_PRICE = "90"


def symbol_names(count: int) -> list[str]:
    return [f"S{n:03d}USDT" for n in range(count)]


# -- the exchange: its streams and the REST reads the workers make -----------------------------

# Binance's request weights (the client's own table) of the public reads a paper exit and
# beat's polling pass make: the clock's sync, the symbol rules, a price.
REST_WEIGHTS = {
    "/api/v3/time": WEIGHTS["time"],
    "/api/v3/exchangeInfo": WEIGHTS["exchange_info"],
    "/api/v3/ticker/price": WEIGHTS["ticker"],
}


def symbol_info(symbol: str) -> dict[str, Any]:
    """A synthetic symbol's exchangeInfo entry: the filters a paper fill rounds to."""
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": symbol.removesuffix("USDT"),
        "quoteAsset": "USDT",
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01",
                "maxPrice": "1000000",
                "tickSize": "0.01",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001",
                "maxQty": "9000",
                "stepSize": "0.00001",
            },
            {"filterType": "NOTIONAL", "minNotional": "5", "applyMinToMarket": True},
        ],
    }


def rest_body(path: str, query: str, symbols: list[str], crossed: set[str]) -> Any:
    now_ms = int(time.time() * 1000)
    if path == "/api/v3/time":
        return {"serverTime": now_ms}
    if path == "/api/v3/exchangeInfo":
        return {
            "timezone": "UTC",
            "serverTime": now_ms,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": [symbol_info(s) for s in symbols],
        }
    # The streamed price: a crossed symbol's stays down, the others' cross no stop.
    symbol = parse_qs(query)["symbol"][0]
    return {"symbol": symbol, "price": CROSSING_PRICE if symbol in crossed else str(ENTRY)}


def closing_kline(stream: str) -> str:
    """The closing update (x true) of the candle the stream is in, as if it closed now: T is
    its last millisecond, as Binance sends it at the close."""
    market = market_of(stream)
    assert market is not None, stream
    symbol, timeframe = market
    step = interval_ms(timeframe)
    close_ms = (int(time.time() * 1000) // step + 1) * step
    kline = {"t": close_ms - step, "T": close_ms - 1, "s": symbol, "i": timeframe, "x": True}
    kline |= {"o": str(ENTRY), "h": str(ENTRY), "l": str(ENTRY), "c": str(ENTRY), "v": "0"}
    data = {"e": "kline", "E": int(time.time() * 1000), "s": symbol, "k": kline}
    return json.dumps({"stream": stream, "data": data})


def serve_market(
    port: int, symbols: list[str], args: argparse.Namespace, start: Any, done: Any
) -> None:
    """Child process: bookTicker frames for every subscribed stream `args.rate` times a
    second; once `start` is set, one symbol's crossing price every `args.cross_every` s, and
    `args.close_after` s in, every kline stream's closing update at once. On the same port it
    answers the workers' REST reads, counting their weight. Asked on the pipe `done`, it
    answers the weight so far by path ("calm": and it crosses no more prices); asked "stop",
    the crossings and closes (stream, epoch s of its send) and the frames it sent since
    `start` over the seconds since. A crossed symbol's price stays down."""
    asyncio.run(_market(port, symbols, args, start, done))


async def _market(
    port: int, symbols: list[str], args: argparse.Namespace, start: Any, done: Any
) -> None:
    connections: dict[ServerConnection, set[str]] = {}
    crossings: list[tuple[str, float]] = []
    crossed: set[str] = set()  # their streams
    closes: list[tuple[str, float]] = []
    weight: Counter[str] = Counter()
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

    def answer_rest(_connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path not in REST_WEIGHTS:
            return None  # a stream connection's handshake
        weight[path] += REST_WEIGHTS[path]
        crossed_symbols = {s.partition("@")[0].upper() for s in crossed}
        body = json.dumps(rest_body(path, query, symbols, crossed_symbols)).encode()
        headers = Headers(
            {"Content-Type": "application/json", "Content-Length": str(len(body))},
            Connection="close",
        )
        return Response(200, "OK", headers, body)

    def frame(stream: str, price: str) -> str:
        nonlocal updates
        updates += 1
        symbol = stream.partition("@")[0].upper()
        data = {"u": updates, "s": symbol, "b": price, "B": "1", "a": price, "A": "1"}
        return json.dumps({"stream": stream, "data": data})

    async with serve(handler, "127.0.0.1", port, process_request=answer_rest):
        next_cross = close_at = None
        calm = False
        started: tuple[float, int] | None = None
        while True:
            if done.poll():
                asked = done.recv()
                if asked == "stop":
                    break
                calm = calm or asked == "calm"
                done.send(dict(weight))
            tick = time.monotonic()
            crossing = closing = None
            if start.is_set():
                started = started or (tick, updates)
                next_cross = next_cross or tick + args.cross_every
                close_at = close_at or tick + args.close_after
                if tick >= next_cross:
                    next_cross += args.cross_every
                    crossing = not calm
                closing = tick >= close_at and not closes
            for ws, streams in list(connections.items()):
                for stream in streams:
                    if not stream.endswith("@bookTicker"):
                        if closing:
                            closes.append((stream, time.time()))
                            with contextlib.suppress(Exception):
                                await ws.send(closing_kline(stream))
                        continue
                    if crossing and stream not in crossed:
                        crossing = None
                        crossed.add(stream)
                        crossings.append((stream.partition("@")[0].upper(), time.time()))
                        message = frame(stream, CROSSING_PRICE)
                    elif stream in crossed:  # it stays down: the exits happen at the worker
                        message = frame(stream, CROSSING_PRICE)
                    else:
                        message = frame(stream, f"{100 + random.random():.2f}")
                    with contextlib.suppress(Exception):
                        await ws.send(message)
            await asyncio.sleep(max(0.0, 1 / args.rate - (time.monotonic() - tick)))
        since, counted = started or (time.monotonic(), updates)
        done.send((crossings, closes, updates - counted, time.monotonic() - since))


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


async def ask(pipe: Any, what: str) -> Any:
    """The market server's answer to `what` (it reads its pipe between two rounds of frames)."""
    pipe.send(what)
    assert await asyncio.to_thread(pipe.poll, 30), f"the market server did not answer {what}"
    return pipe.recv()


async def tasks_run(redis: Redis) -> list[tuple[str, str, str | None, float]]:
    """What the worker noted (bench/stream_tasks.py): (start/end, task, subscription, epoch s)."""
    return [tuple(json.loads(raw)) for raw in await redis.lrange(TASKS_KEY, 0, -1)]


async def wait_for(redis: Redis, done: Any, timeout_s: float) -> bool:
    """Wait until the worker's notes satisfy `done`, at most `timeout_s`: whether they do."""
    since = time.monotonic()
    while not done(await tasks_run(redis)):
        if time.monotonic() - since > timeout_s:
            return False
        await asyncio.sleep(0.5)
    return True


def weight_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


async def measure(args: argparse.Namespace, database_url: str, port: int) -> dict[str, Any]:
    symbols = symbol_names(args.symbols)
    sub_symbols = await seed(database_url, symbols, args.positions)
    start, (market_pipe, server_pipe) = multiprocessing.Event(), multiprocessing.Pipe()
    market = multiprocessing.Process(
        target=serve_market, args=(port, symbols, args, start, server_pipe)
    )
    market.start()
    settings = Settings(database_url=database_url, binance_stream_url=f"ws://127.0.0.1:{port}")
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    redis = Redis.from_url(redis_url(args))
    # The worker's broker and price book, as `botmarket stream` sends to them.
    jobs = JobQueue(redis_url(args))
    sent: list[tuple[float, str, dict[str, Any]]] = []

    async def enqueue(name: str, payload: dict[str, Any]) -> None:
        await jobs.send(name, payload)
        sent.append((time.time(), name, payload))

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
        weight_before = await ask(market_pipe, "weight")
        start.set()
        cpu_from, wall_from = cpu_s(), time.monotonic()
        await asyncio.sleep(args.seconds / 2)
        load_from = time.monotonic()
        await flows.load_exits()
        load_ms = (time.monotonic() - load_from) * 1000
        await asyncio.sleep(max(0.0, args.seconds - (time.monotonic() - wall_from)))
        cpu, wall = cpu_s() - cpu_from, time.monotonic() - wall_from
        sampling.cancel()
        await ask(market_pipe, "calm")  # no more crossings
        await asyncio.sleep(1)  # the last crossing's jobs
        # Every exit job run (its fill recorded), the streams still up as in production (the
        # workers read the streamed price); then the steady state's weight: the window and
        # the exits' tail.
        # At most --exits-wait: the queue may grow faster than the worker drains it.
        await wait_for(
            redis,
            lambda run: (
                {s for p, n, s, _ in run if p == "end" and n == "trading.exit"}
                >= {job["subscription_id"] for _, name, job in sent if name == "trading.exit"}
            ),
            args.exits_wait,
        )
        weight_window = weight_since(weight_before, await ask(market_pipe, "weight"))
        steady_s = time.monotonic() - wall_from
    finally:
        running.cancel()
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    exits_sent = [
        (at, str(job["subscription_id"])) for at, name, job in sent if name == "trading.exit"
    ]
    # What is left in the queue is exit jobs sent again (a position reread before its exit
    # ran is crossed again every refresh) that would find their exit made: dropped, so that
    # the polling pass is timed alone, not behind them.
    async for key in redis.scan_iter("celery*"):
        await redis.delete(key)
    # Beat's polling pass with no fresh streamed price (the streams stopped, their prices
    # gone): every open position walked at the exchange's price.
    await redis.delete(REDIS_KEY)
    weight_before = await ask(market_pipe, "weight")
    protect_sent = time.time()
    protect_at = datetime.fromtimestamp(protect_sent, UTC)
    await jobs.send("trading.protect", {})
    ended = await wait_for(
        redis, lambda run: any(n == "trading.protect" and p == "end" for p, n, *_ in run), 300
    )
    assert ended, "beat's polling pass did not end in 5 min"
    weight_protect = weight_since(weight_before, await ask(market_pipe, "weight"))
    crossings, closes, messages, sent_s = await ask(market_pipe, "stop")
    market.join(10)
    run = await tasks_run(redis)
    async with sessionmaker() as session:
        trades = (await session.execute(select(Trade).where(Trade.side == "SELL"))).scalars().all()
        walked = await session.scalar(
            select(func.count()).select_from(Position).where(Position.quantity > 0)
        )
    await redis.flushdb()
    await redis.aclose()
    jobs.close()
    await engine.dispose()
    crossed_at = dict(crossings)
    exit_started = {
        str(s): at for p, n, s, at in reversed(run) if p == "start" and n == "trading.exit"
    }
    latencies, handled, hops = [], [], []
    seen: set[str] = set()
    for at, sub_id in exits_sent:
        symbol = sub_symbols[sub_id]
        if symbol in crossed_at and sub_id not in seen and at >= crossed_at[symbol]:
            seen.add(sub_id)
            latencies.append((at - crossed_at[symbol]) * 1000)
            handled.append((at - flows.arrivals[symbol]) * 1000)
            if sub_id in exit_started:  # the rest still waited in the queue
                hops.append((exit_started[sub_id] - at) * 1000)
    # A paper exit's order: its trade row is written when its attempt starts (the order's
    # send, for a paper order) and updated with the fill.
    to_order, to_fill = [], []
    for trade in trades:
        crossed = crossed_at.get(sub_symbols[trade.subscription_id])
        # Those of the exit jobs: beat's pass exits what they left open, at the same price.
        if crossed is not None and trade.status == "filled" and trade.created_at < protect_at:
            to_order.append((trade.created_at.timestamp() - crossed) * 1000)
            to_fill.append((trade.updated_at.timestamp() - crossed) * 1000)
    closed_at = {market_of(stream): at for stream, at in closes}
    decided = [
        (at - closed_at[(group["symbol"], group["timeframe"])]) * 1000
        for at, name, payload in sent
        if name == "trading.decide"
        for group in payload["groups"]
        if at >= closed_at.get((group["symbol"], group["timeframe"]), math.inf)
    ]
    protect = {p: at for p, n, _, at in run if n == "trading.protect"}
    walk_s = protect["end"] - protect["start"]
    delivered = [(flows.arrivals[s] - at) * 1000 for s, at in crossings if s in flows.arrivals]
    expected = sum(1 for s in sub_symbols.values() if s in crossed_at)
    # Binance counts weight per wall-clock minute: a steady state shorter than one spends
    # its weight within one.
    minutes = max(steady_s, 60.0) / 60
    return {
        "bench": "stream",
        "load_average_1m": round(os.getloadavg()[0], 2),
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
        "exit_jobs_sent_with_resends": len(exits_sent),
        "exits_filled": len(to_fill),
        "exits_started": len(hops),
        "crossing_to_exit_send_ms": _spread(latencies),
        # The two parts of it: the server's send to the price's arrival in the flows (per
        # crossing), and the arrival to the exit job's send (per position).
        "crossing_to_arrival_ms": _spread(delivered),
        "arrival_to_exit_send_ms": _spread(handled),
        # The broker's hop: the exit job's send to its start in a worker's pool process.
        "exit_send_to_task_start_ms": _spread(hops),
        "crossing_to_exit_order_ms": _spread(to_order),
        "crossing_to_fill_ms": _spread(to_fill),
        "kline_closes": len(closes),
        "groups_decided": len(decided),
        "close_to_decide_send_ms": _spread(decided),
        "protect_send_to_start_ms": round((protect["start"] - protect_sent) * 1000, 1),
        "steady_s": round(steady_s, 1),
        "rest_weight_steady": weight_window,
        "rest_weight_per_minute": round(sum(weight_window.values()) / minutes),
        "protect_positions": walked,
        "protect_walk_s": round(walk_s, 2),
        "protect_rest_weight": weight_protect,
        "protect_interval_s": settings.protect_interval_s,
        # A crossing between two polling passes waits for the next and for the walk to reach
        # its position: at worst the interval and a whole walk.
        "protect_crossing_worst_s": round(settings.protect_interval_s + walk_s, 2),
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


def redis_url(args: argparse.Namespace) -> str:
    return f"redis://127.0.0.1:6379/{args.redis_db}"


def worker_command(concurrency: int) -> list[str]:
    """The project's Celery app as `botmarket worker` runs it, on the default queue only (the
    exits, beat's protect): the decide jobs wait in theirs, no LLM behind them here."""
    return [
        *(sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker"),
        *("--concurrency", str(concurrency), "--queues", "celery", "-I", "stream_tasks"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"),
    ]


def table(r: dict[str, Any]) -> str:
    def spread(key: str) -> str:
        return " / ".join(str(r[key][q]) for q in ("p50", "p99", "max"))

    rows = [
        ("messages a second", r["messages_per_s"]),
        ("CPU, share of one core", f"{r['cpu_share_of_one_core']:.0%}"),
        ("peak RSS, MB", r["peak_rss_mb"]),
        ("one refresh, ms", r["refresh_ms_median"]),
        ("the index read whole, ms", r["index_full_read_ms"]),
        ("event loop lag p99 / max, ms", f"{r['loop_lag_ms']['p99']} / {r['loop_lag_ms']['max']}"),
        ("crossing sent -> exit job sent, p50/p99/max ms", spread("crossing_to_exit_send_ms")),
        ("  sent -> arrived in the flows", spread("crossing_to_arrival_ms")),
        ("  arrived -> exit job sent", spread("arrival_to_exit_send_ms")),
        ("exit job sent -> its task's start (broker hop)", spread("exit_send_to_task_start_ms")),
        ("crossing sent -> exit order (paper)", spread("crossing_to_exit_order_ms")),
        ("crossing sent -> fill recorded", spread("crossing_to_fill_ms")),
        (
            "exits sent / started / filled / crossed",
            f"{r['exits_sent']}/{r['exits_started']}/{r['exits_filled']}/{r['exits_expected']}",
        ),
        ("closing kline sent -> decide job sent", spread("close_to_decide_send_ms")),
        ("  groups decided / kline closes", f"{r['groups_decided']}/{r['kline_closes']}"),
        ("REST weight a minute, steady state", r["rest_weight_per_minute"]),
        ("  by endpoint", r["rest_weight_steady"]),
        ("protect: open positions walked", r["protect_positions"]),
        ("protect: one walk, s", r["protect_walk_s"]),
        ("protect: sent -> started (idle worker), ms", r["protect_send_to_start_ms"]),
        ("protect: REST weight by endpoint", r["protect_rest_weight"]),
        ("protect: a crossing's worst wait (interval + walk), s", r["protect_crossing_worst_s"]),
        ("load average (1 min) at the end", r["load_average_1m"]),
    ]
    return "\n".join(f"{label:<56}{value!s:>24}" for label, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=10.0, help="updates per symbol per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cross-every", type=float, default=1.0)
    parser.add_argument("--close-after", type=float, default=5.0, help="s into the window")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's children")
    parser.add_argument("--exits-wait", type=float, default=90.0, help="s after the window")
    parser.add_argument("--mariadb", default="mysql+asyncmy://root@127.0.0.1:3306/")
    parser.add_argument("--redis-db", type=int, default=14)
    args = parser.parse_args()
    port = free_port()
    with (
        fresh_database(args.mariadb) as database_url,
        tempfile.TemporaryDirectory(prefix="botmarket-stream-") as tmp,
    ):
        migrate(database_url)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "bench"),  # stream_tasks
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url(args),
            "CELERY_BROKER_URL": redis_url(args),
            "BINANCE_API_URL": f"http://127.0.0.1:{port}",
            "WORKER_METRICS_PORT": "0",
        }
        SyncRedis.from_url(redis_url(args)).flushdb()  # the broker's queues too
        log = Path(tmp) / "worker.log"
        with process(worker_command(args.concurrency), env, log, b"ready."):
            result = asyncio.run(measure(args, database_url, port))
    print(f"{result['symbols']} symbols, {result['positions']} positions, {os.cpu_count()} CPUs\n")
    print(table(result))
    RESULTS.write_text(json.dumps(result, sort_keys=True) + "\n")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
