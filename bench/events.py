"""Events at scale (issue 21 §5): the live stream's connections, fan-out latency, webhook
deliveries and the feed's GET, measured in one run on this machine.

Sets up, from nothing: a fresh MariaDB database (dropped after), Redis db --redis-db
(flushed), --keys marketplace keys of one marketplace, and in bulk through the models: one
renter for every --per-renter connections (the "spread" renters) plus one renter who holds
--broadcast connections, --feed-events events of the spread renters for the feed, and a stream
ticket (app/events/tickets.issue, with a TTL long enough to open them all) for each connection.
Then, in order:

  (1) connections  `botmarket serve` (one API process, uvicorn with uvloop, httptools and its
                   WebSocket pings, as production runs it) and --clients client processes
                   (asyncio + websockets, offering permessage-deflate as browsers do) open
                   --connections WebSockets, each with its ticket; with all of them idle, the
                   API process's RSS (VmRSS, and VmHWM, its peak so far).
  (2) renters      --events events, one every 1/--rate s, each to a random spread renter,
                   written as a worker writes them (app/events/service.record in a transaction
                   of a sessionmaker served by the Redis doorbell, so the doorbell rings after
                   the commit). The writer stamps the time before the commit into the event's
                   data; each client notes the time it received the frame: commit-to-receipt
                   latency of every frame, p50/p99/max; every connection of the renter must
                   receive it.
  (3) broadcast    --broadcasts events to the renter with --broadcast connections, one a
                   second: for each, the time until the last of them had it.
  (4) feed         GET /api/v1/events?limit=50 with a marketplace key and X-Principal-ID (a
                   renter's --feed-events / --feed-renters events), cycling through renters and
                   keys, each poll sent --replicas times in a row as a canister's subnet sends
                   an outcall (once from every replica), against the bare FastAPI app of
                   bench/gateway_baseline.py: all under `uvicorn --workers 2` and `wrk -t2
                   -c64`, as bench/gateway.py measures; --rounds rounds alternating the order,
                   medians, and the ratio. Twice: the API as deployed (its replica window,
                   FEED_REPLICA_WINDOW_S, answers a poll's replicas with one read per process),
                   and a second API with the window off, where every request reads.
  (5) webhooks     an endpoint registered through the API (POST /api/v1/webhooks) for a local
                   receiver (a raw ASGI app under one uvicorn process, counting webhook-ids);
                   --deliveries events written and numbered; then one `botmarket worker` (its
                   default pool: one prefork child per core) with Redis as the broker is sent
                   `webhooks.dispatch` once a second, as beat sends it. Deliveries per second from
                   the first dispatch to the receiver's last new webhook-id; every event must
                   arrive.

The bench raises its open-file limit (RLIMIT_NOFILE) to the hard limit; the server and the
clients inherit it. With a hard limit too low for --connections, it says so and opens fewer.

--only webhooks runs (5) alone: the keys and renters seeded, no feed events, tickets,
WebSockets or wrk; under a minute, to measure a change to the delivery flows. --only feed runs
(4) alone: the keys, renters and feed events seeded, no tickets or WebSockets; a minute or two,
to measure a change to the feed's GET.

The last line printed is one JSON object with every figure, also written to
bench/results/events.json (bench/results/events-<part>.json for --only <part>). The exit
status is 1 when a target is missed.

Usage: python bench/events.py [--connections 10000] [--clients 2] [--only webhooks|feed]
Needs wrk (apt-get install -y wrk), MariaDB (root@127.0.0.1:3306) and Redis (127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
# This checkout's `app`, never an installed copy.
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from common import free_port, fresh_database  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from gateway import load_average, percentile, principal_of  # noqa: E402
from redis import Redis  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from versus_bare import BIN, alternate, bare_and_api, lua_script, medians, uvicorn, wrk  # noqa: E402

from app.api_keys.schemas import Scope  # noqa: E402
from app.api_keys.service import create_api_key  # noqa: E402
from app.core.db import (  # noqa: E402
    create_engine,
    create_sessionmaker,
    new_id,
    session_scope,
    utcnow,
)
from app.core.migrations import migrate  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.events import feed, tickets  # noqa: E402
from app.events.doorbell import Doorbell  # noqa: E402
from app.events.service import record  # noqa: E402
from app.events.types import EventType  # noqa: E402
from app.models import User  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "events.json"
TARGETS = {
    "connections": "every connection opened; API RSS with all idle < 1 GB",
    "renters": "p99 commit-to-receipt < 1 s, every frame received",
    "broadcast": "every broadcast reaches all its connections within 1 s",
    "feed": "ratio to the bare app >= 0.20, zero errors",
    "webhooks": ">= 500 deliveries/s with one worker, every event delivered",
}
# File descriptors the API process needs beside its sockets (database, Redis, logs, ...).
SPARE_FDS = 200
# WebSocket handshakes each client process has in flight at once.
OPEN_LANES = 64
# How long the clients are given to receive the last event of a phase.
SETTLE_S = 3.0
WEBHOOK_TYPE = EventType.trade_filled


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft open-file limit to the hard one (children inherit it);
    returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(f"open-file limit: {limit} (hard {hard}); wanted {wanted}", file=sys.stderr)
    return int(limit)


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (the most ever resident) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


# -- data ------------------------------------------------------------------------------------


@dataclass
class Seed:
    keys: list[str]  # marketplace keys, of one marketplace
    marketplace_id: str
    # renters: (user id, principal); the first `broadcast_renter` holds the broadcast sockets
    renters: list[tuple[str, str]]
    # one ticket per connection, with the index of its renter in `renters`
    tickets: list[tuple[str, int]]


async def seed(database_url: str, args: argparse.Namespace, spread: int) -> Seed:
    """Keys, renters, feed events and tickets, as the API would have written them, in bulk."""
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    async with session_scope(sessionmaker) as session:
        made = [
            await create_api_key(
                session,
                f"bench marketplace {n}",
                Scope.marketplace,
                marketplace="bench",
                create_marketplace=True,
            )
            for n in range(args.keys)
        ]
    marketplace_id = made[0].row.marketplace_id
    assert marketplace_id is not None
    renters = [(new_id(), principal_of(n)) for n in range(spread + 1)]
    rows = [
        {"id": i, "principal": p, "marketplace_id": marketplace_id, "kind": "renter"}
        for i, p in renters
    ]
    async with engine.begin() as connection:
        for start in range(0, len(rows), 2000):
            await connection.execute(insert(User), rows[start : start + 2000])
    feed_renters = renters[1 : 1 + args.feed_renters]
    async with session_scope(sessionmaker) as session:
        for n in range(args.feed_events):
            _record(
                session, EventType.trade_filled, marketplace_id, feed_renters[n % len(feed_renters)]
            )
    while await feed.sequence(sessionmaker):
        pass
    owners = [0] * args.broadcast + [
        1 + n // args.per_renter for n in range(spread * args.per_renter)
    ]
    owners = owners[: args.connections]
    issued: list[tuple[str, int]] = []
    async with session_scope(sessionmaker) as session:
        for owner in owners:
            ticket = tickets.issue(
                session, made[0].row.id, renters[owner][1], utcnow(), timedelta(minutes=30)
            )
            issued.append((ticket.text, owner))
    await engine.dispose()
    return Seed([key.plaintext for key in made], marketplace_id, renters, issued)


def _record(session: Any, type: EventType, marketplace_id: str, renter: tuple[str, str]) -> str:
    """A trade.filled-shaped event for the renter, stamped with the time before its commit;
    returns its envelope's id."""
    event = record(
        session,
        type,
        data={
            "symbol": "BTCUSDT",
            "side": "BUY",
            "quantity": Decimal("0.00123"),
            "price": Decimal("64250.10"),
            "fee": Decimal("0.079"),
            "quote_amount": Decimal("79.03"),
            # Bench-only: when the writer committed (epoch seconds), for the client's latency.
            "sent_at": time.time(),
        },
        user_id=renter[0],
        principal=renter[1],
        marketplace_id=marketplace_id,
    )
    return f"evt_{event.id}"


# -- clients ---------------------------------------------------------------------------------


def client_process(pipe: Connection, url: str, tickets: list[str], deflate: bool) -> None:
    """A client process: open a WebSocket per ticket, then answer the bench's commands."""
    import uvloop

    uvloop.run(_client(pipe, url, tickets, deflate))


async def _client(pipe: Connection, url: str, tickets: list[str], deflate: bool) -> None:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed

    sockets: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []
    # (event id, seconds from the writer's stamp to this frame's arrival)
    receipts: list[tuple[str, float]] = []
    errors: Counter[str] = Counter()
    lanes = asyncio.Semaphore(OPEN_LANES)

    async def read(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                arrived = time.time()
                event = json.loads(frame)["event"]
                receipts.append((event["id"], arrived - event["data"]["sent_at"]))

    async def open_one(ticket: str) -> None:
        async with lanes:
            try:
                # The server pings (uvicorn's ws_ping_interval); the client only answers.
                ws = await connect(
                    f"{url}?ticket={quote(ticket)}",
                    ping_interval=None,
                    open_timeout=120,
                    max_queue=None,
                    # Browsers offer permessage-deflate; the server's share of it is memory.
                    compression="deflate" if deflate else None,
                )
            except Exception as exc:
                errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                return
        sockets.append(ws)
        readers.append(asyncio.create_task(read(ws)))

    await asyncio.gather(*(open_one(ticket) for ticket in tickets))
    pipe.send({"opened": len(sockets), "errors": dict(errors)})
    while True:
        command = await asyncio.to_thread(pipe.recv)
        if command == "collect":
            pipe.send(list(receipts))
            receipts.clear()
        elif command == "close":
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            for task in readers:
                task.cancel()
            pipe.send("closed")
            return


class Clients:
    """The client processes, each holding its share of the connections."""

    def __init__(self, url: str, tickets: list[str], processes: int, deflate: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes = []
        for n in range(processes):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=client_process,
                args=(theirs, url, tickets[n::processes], deflate),
                daemon=True,
            )
            process.start()
            self._pipes.append(ours)
            self._processes.append(process)

    def opened(self) -> tuple[int, dict[str, int]]:
        errors: Counter[str] = Counter()
        opened = 0
        for pipe in self._pipes:
            report = pipe.recv()
            opened += report["opened"]
            errors.update(report["errors"])
        return opened, dict(errors)

    def collect(self) -> list[tuple[str, float]]:
        for pipe in self._pipes:
            pipe.send("collect")
        return [receipt for pipe in self._pipes for receipt in pipe.recv()]

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send("close")
        for pipe, process in zip(self._pipes, self._processes, strict=True):
            with contextlib.suppress(OSError, EOFError):
                if pipe.poll(60):
                    pipe.recv()
            process.join(10)
            if process.is_alive():
                process.kill()


# -- servers ---------------------------------------------------------------------------------


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[int]:
    """One server process, until the block ends, once `ready_url` answers 200; yields its pid."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(ready_url).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{command[:3]} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield process.pid
        finally:
            _stop(process)


@contextlib.contextmanager
def celery_worker(env: dict[str, str], log: Path) -> Iterator[int]:
    """`botmarket worker` until the block ends, once it is ready; yields its pid."""
    command = [str(BIN / "botmarket"), "worker", "--without-gossip", "--without-mingle"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 60
            while b"ready." not in log.read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the worker did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield process.pid
        finally:
            _stop(process)


# -- the webhook receiver (served by uvicorn as `events:receiver`) ------------------------------

_received: dict[str, Any] = {"requests": 0, "ids": set(), "last_new_at": None}


async def receiver(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every POST 204 at once, noting its webhook-id; GET /stats tells the counts."""
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":
        body = json.dumps(
            {
                "requests": _received["requests"],
                "unique": len(_received["ids"]),
                "last_new_at": _received["last_new_at"],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    webhook_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
    _received["requests"] += 1
    if webhook_id and webhook_id not in _received["ids"]:
        _received["ids"].add(webhook_id)
        _received["last_new_at"] = time.time()
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


# -- (1)-(3): the live stream ----------------------------------------------------------------


async def write_events(
    database_url: str,
    redis_url: str,
    marketplace_id: str,
    renters: list[tuple[str, str]],
    interval_s: float,
) -> list[str]:
    """One event per renter in the list, each in its own transaction, `interval_s` apart, as
    a worker writes them: the doorbell rings after each commit. Returns their envelope ids."""
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    doorbell = Doorbell(Settings(database_url=database_url, redis_url=redis_url))
    doorbell.serve(sessionmaker)
    ids = []
    next_at = time.monotonic()
    for renter in renters:
        async with session_scope(sessionmaker) as session:
            ids.append(_record(session, EventType.trade_filled, marketplace_id, renter))
        next_at += interval_s
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    doorbell.close()
    await engine.dispose()
    return ids


def latencies_of(receipts: list[tuple[str, float]], ids: list[str]) -> dict[str, list[float]]:
    wanted: dict[str, list[float]] = {event_id: [] for event_id in ids}
    for event_id, seconds in receipts:
        if event_id in wanted:
            wanted[event_id].append(seconds)
    return wanted


def renters_phase(
    args: argparse.Namespace, bench: Seed, database_url: str, redis_url: str, clients: Clients
) -> dict[str, Any]:
    sockets = Counter(owner for _, owner in bench.tickets)
    rng = random.Random(21)
    targets = [rng.randrange(1, len(bench.renters)) for _ in range(args.events)]
    ids = asyncio.run(
        write_events(
            database_url,
            redis_url,
            bench.marketplace_id,
            [bench.renters[t] for t in targets],
            1 / args.rate,
        )
    )
    time.sleep(SETTLE_S)
    by_event = latencies_of(clients.collect(), ids)
    every = [seconds for received in by_event.values() for seconds in received]
    expected = sum(sockets[t] for t in targets)
    figures = {
        "events": len(ids),
        "rate_per_s": args.rate,
        "frames_expected": expected,
        "frames_received": len(every),
        "p50_ms": round(1000 * percentile(every, 0.5), 1),
        "p99_ms": round(1000 * percentile(every, 0.99), 1),
        "max_ms": round(1000 * max(every, default=float("nan")), 1),
    }
    figures["met"] = figures["frames_received"] == expected and figures["p99_ms"] < 1000
    return figures


def broadcast_phase(
    args: argparse.Namespace, bench: Seed, database_url: str, redis_url: str, clients: Clients
) -> dict[str, Any]:
    sockets = sum(1 for _, owner in bench.tickets if owner == 0)
    ids = asyncio.run(
        write_events(
            database_url, redis_url, bench.marketplace_id, [bench.renters[0]] * args.broadcasts, 1.0
        )
    )
    time.sleep(SETTLE_S)
    by_event = latencies_of(clients.collect(), ids)
    reached = [
        round(1000 * max(received, default=float("nan")), 1) for received in by_event.values()
    ]
    figures: dict[str, Any] = {
        "connections": sockets,
        "events": len(ids),
        "received_each": sorted({len(received) for received in by_event.values()}),
        "all_reached_ms": reached,
        "all_reached_ms_max": max(reached),
        "all_reached_ms_median": statistics.median(reached),
    }
    figures["met"] = figures["received_each"] == [sockets] and figures["all_reached_ms_max"] < 1000
    return figures


def live_phases(
    args: argparse.Namespace, bench: Seed, env: dict[str, str], workdir: Path
) -> dict[str, dict[str, Any]]:
    port = free_port()
    command = [str(BIN / "botmarket"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    base = f"127.0.0.1:{port}"
    with serving(command, env, workdir / "serve.log", f"http://{base}/health/ready") as pid:
        baseline_rss = rss_mb(pid)
        started = time.monotonic()
        clients = Clients(
            f"ws://{base}/api/v1/events/ws",
            [t for t, _ in bench.tickets],
            args.clients,
            args.deflate,
        )
        try:
            opened, errors = clients.opened()
            open_s = time.monotonic() - started
            print(f"  {opened} connections open in {open_s:.1f} s", file=sys.stderr)
            time.sleep(args.idle_s)
            connections = {
                "wanted": len(bench.tickets),
                "opened": opened,
                "open_s": round(open_s, 1),
                "errors": errors,
                "api_rss_mb_before": baseline_rss["VmRSS"],
                "api_rss_mb_idle": rss_mb(pid)["VmRSS"],
                "api_rss_mb_peak": rss_mb(pid)["VmHWM"],
                "idle_s": args.idle_s,
            }
            connections["met"] = (
                opened == len(bench.tickets) and connections["api_rss_mb_idle"] < 1024
            )
            clients.collect()  # nothing is expected yet
            print("  renters' events ...", file=sys.stderr)
            renters = renters_phase(args, bench, env["DATABASE_URL"], env["REDIS_URL"], clients)
            print("  broadcasts ...", file=sys.stderr)
            broadcast = broadcast_phase(args, bench, env["DATABASE_URL"], env["REDIS_URL"], clients)
            connections["api_rss_mb_after"] = rss_mb(pid)["VmRSS"]
        finally:
            clients.close()
    return {"connections": connections, "renters": renters, "broadcast": broadcast}


# -- (4): the feed ---------------------------------------------------------------------------


def feed_phase(
    args: argparse.Namespace, bench: Seed, env: dict[str, str], workdir: Path, receiver_url: str
) -> tuple[dict[str, Any], str]:
    """wrk on the feed and on the bare app, alternating; then, while the API is up, the
    webhook endpoint registered for (5). Returns the figures and the endpoint's id."""
    principals = [p for _, p in bench.renters[1 : 1 + args.feed_renters]]
    polls = [("/api/v1/events?limit=50", p) for p in principals for _ in range(args.replicas)]
    baseline = [(f"/api/v1/subscriptions/{n}", p) for n, p in enumerate(principals)]
    scripts = {
        "baseline": lua_script(workdir / "baseline.lua", bench.keys, baseline),
        "feed": lua_script(workdir / "feed.lua", bench.keys, polls),
    }
    scripts["feed_each_read"] = scripts["feed"]
    unwindowed = {**env, "FEED_REPLICA_WINDOW_S": "0"}
    with (
        bare_and_api(env, workdir) as (bare, api),
        uvicorn(
            "app.main:create_app", unwindowed, workdir / "api-unwindowed.log", "/health/ready", ROOT
        ) as each_read,
    ):
        check = httpx.get(
            f"{api.url}/api/v1/events?limit=50",
            headers={"X-API-Key": bench.keys[0], "X-Principal-ID": principals[0]},
        )
        check.raise_for_status()
        page_size = len(check.json()["items"])
        runs = {
            name: (
                server,
                functools.partial(wrk, server.url, scripts[name], connections=args.wrk_connections),
            )
            for name, server in (("baseline", bare), ("feed", api), ("feed_each_read", each_read))
        }
        rounds = alternate(runs, args.rounds, args.seconds, warm=runs)
        endpoint_id = register_endpoint(api.url, bench, receiver_url)
    figures: dict[str, Any] = {
        "page_items": page_size,
        "replicas": args.replicas,
        **medians(rounds),
    }
    figures["ratio"] = figures["feed"]["ratio"]
    figures["ratio_each_read"] = figures["feed_each_read"]["ratio"]
    figures["met"] = figures["ratio"] >= 0.20 and figures["feed"]["errors"] == 0
    return figures, endpoint_id


def register_endpoint(api_url: str, bench: Seed, receiver_url: str) -> str:
    """The webhook endpoint of (5), registered through the API for the local receiver."""
    registered = httpx.post(
        f"{api_url}/api/v1/webhooks",
        json={"url": receiver_url, "types": [WEBHOOK_TYPE.value], "description": "bench"},
        headers={"X-API-Key": bench.keys[0]},
    )
    registered.raise_for_status()
    return str(registered.json()["id"])


def webhooks_only_endpoint(
    bench: Seed, env: dict[str, str], workdir: Path, receiver_url: str
) -> None:
    """For `--only webhooks`: the API up just long enough to register (5)'s endpoint."""
    with uvicorn("app.main:create_app", env, workdir / "api.log", "/health/ready", ROOT) as api:
        register_endpoint(api.url, bench, receiver_url)


# -- (5): webhooks ---------------------------------------------------------------------------


async def write_backlog(database_url: str, bench: Seed, count: int) -> None:
    """`count` events of the spread renters, a thousand a transaction, then numbered (as the
    sequencer numbers them within a second in production)."""
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    for start in range(0, count, 1000):
        async with session_scope(sessionmaker) as session:
            for n in range(start, min(count, start + 1000)):
                renter = bench.renters[1 + n % (len(bench.renters) - 1)]
                _record(session, WEBHOOK_TYPE, bench.marketplace_id, renter)
    while await feed.sequence(sessionmaker):
        pass
    await engine.dispose()


def webhooks_phase(
    args: argparse.Namespace, bench: Seed, env: dict[str, str], workdir: Path, receiver_url: str
) -> dict[str, Any]:
    from celery import Celery

    stats_url = receiver_url.rsplit("/", 1)[0] + "/stats"
    before = httpx.get(stats_url).json()
    with celery_worker(env, workdir / "worker.log") as pid:
        asyncio.run(write_backlog(env["DATABASE_URL"], bench, args.deliveries))
        producer = Celery(broker=env["REDIS_URL"])
        cpu_before = cpu_s(_children(pid))
        started = time.time()
        deadline = started + args.webhook_timeout_s
        next_dispatch = started
        stats = before
        while stats["unique"] - before["unique"] < args.deliveries and time.time() < deadline:
            if time.time() >= next_dispatch:  # as beat sends it, once a second
                producer.send_task("webhooks.dispatch")
                next_dispatch += 1.0
            time.sleep(0.1)
            stats = httpx.get(stats_url).json()
        worker_cpu_s = cpu_s(_children(pid)) - cpu_before
        worker_rss = {str(p): rss_mb(p)["VmHWM"] for p in _children(pid)}
    delivered = stats["unique"] - before["unique"]
    elapsed = (stats["last_new_at"] or time.time()) - started
    figures: dict[str, Any] = {
        "events": args.deliveries,
        "delivered": delivered,
        "requests": stats["requests"] - before["requests"],
        "seconds": round(elapsed, 2),
        "per_s": round(delivered / elapsed, 1),
        # The worker's own CPU per delivery: the cost, whatever else the machine runs.
        "worker_cpu_ms_per_delivery": round(1000 * worker_cpu_s / max(delivered, 1), 2),
        "worker_peak_rss_mb": worker_rss,
    }
    figures["met"] = delivered == args.deliveries and figures["per_s"] >= 500
    return figures


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) these processes have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(stat[11]) + int(stat[12])) / tick
    return total


def _children(pid: int) -> list[int]:
    """The process and its direct children (a worker and its pool)."""
    listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in listed)]


# -- report ----------------------------------------------------------------------------------


def table(results: dict[str, dict[str, Any]]) -> str:
    """The parts that ran (--only runs one), one paragraph each."""

    def met(name: str) -> str:
        return f"{TARGETS[name]} — " + ("met" if results[name]["met"] else "MISSED")

    lines = []
    if "connections" in results:
        c, r, b = results["connections"], results["renters"], results["broadcast"]
        lines += [
            f"(1) connections: {c['opened']} of {c['wanted']} open in {c['open_s']} s "
            f"(errors {c['errors'] or 0}); API RSS {c['api_rss_mb_before']} MB before, "
            f"{c['api_rss_mb_idle']} MB with all idle, {c['api_rss_mb_after']} MB after (2)-(3), "
            f"peak {c['api_rss_mb_peak']} MB\n    {met('connections')}",
            f"(2) renters: {r['events']} events at {r['rate_per_s']}/s, {r['frames_received']} of "
            f"{r['frames_expected']} frames; commit to receipt p50 {r['p50_ms']} ms, p99 "
            f"{r['p99_ms']} ms, max {r['max_ms']} ms\n    {met('renters')}",
            f"(3) broadcast: {b['events']} events to {b['connections']} connections, each "
            f"received by {b['received_each']}; all reached after median "
            f"{b['all_reached_ms_median']} ms, worst {b['all_reached_ms_max']} ms\n"
            f"    {met('broadcast')}",
        ]
    if "feed" in results:
        f = results["feed"]

        def served(run: dict[str, Any]) -> str:
            return (
                f"{run['req_s']:.0f} req/s (p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
                f"{run['errors']} errors, {run['cpu_ms']} ms of CPU each, rounds "
                f"{run['rounds_req_s']}): ratio {run['ratio']}"
            )

        lines.append(
            f"(4) feed, {f['page_items']} events a page, each poll {f['replicas']} times:\n"
            f"    as deployed (replica window): {served(f['feed'])}\n"
            f"    every request read (window 0): {served(f['feed_each_read'])}\n"
            f"    bare app: {served(f['baseline'])}\n    {met('feed')}"
        )
    if "webhooks" in results:
        w = results["webhooks"]
        lines.append(
            f"(5) webhooks: {w['delivered']} of {w['events']} events delivered "
            f"({w['requests']} POSTs) in {w['seconds']} s: {w['per_s']}/s; the worker's CPU "
            f"{w['worker_cpu_ms_per_delivery']} ms per delivery; its processes' peak RSS "
            f"{w['worker_peak_rss_mb']} MB\n    {met('webhooks')}"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument(
        "--per-renter", type=int, default=2, help="connections of each spread renter"
    )
    parser.add_argument("--broadcast", type=int, default=1000, help="connections of one renter")
    parser.add_argument(
        "--deflate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="clients offer permessage-deflate, as browsers do",
    )
    parser.add_argument("--idle-s", type=float, default=10.0, help="idle before RSS is read")
    parser.add_argument("--events", type=int, default=500, help="(2): events to spread renters")
    parser.add_argument("--rate", type=float, default=50.0, help="(2): events a second")
    parser.add_argument("--broadcasts", type=int, default=10)
    parser.add_argument("--keys", type=int, default=20, help="marketplace keys (for wrk)")
    parser.add_argument("--feed-renters", type=int, default=1000)
    parser.add_argument("--feed-events", type=int, default=10_000)
    parser.add_argument(
        "--replicas",
        type=int,
        default=13,
        help="times each feed poll is sent in a row (a 13-node subnet's outcall)",
    )
    parser.add_argument("--seconds", type=int, default=10, help="(4): each wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--wrk-connections", type=int, default=64)
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--webhook-timeout-s", type=float, default=120.0)
    parser.add_argument(
        "--only",
        choices=["webhooks", "feed"],
        help="run only (5), seeding no feed events, or only (4); neither opens a socket",
    )
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--mariadb", default="mysql+asyncmy://root@127.0.0.1:3306/")
    args = parser.parse_args()
    limit = raise_open_files(args.connections + SPARE_FDS)
    if limit < args.connections + SPARE_FDS:
        args.connections = limit - SPARE_FDS
        print(
            f"the hard open-file limit is too low: measuring {args.connections} connections",
            file=sys.stderr,
        )
    args.broadcast = min(args.broadcast, args.connections // 2)
    if args.only is not None:
        args.connections = args.broadcast = 0
    if args.only == "webhooks":
        args.feed_events = 0
    return args


def main() -> None:
    args = parse_args()
    if args.only != "webhooks" and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    # --only: the renters (4)'s or (5)'s events are written for, and no connection.
    spread = -(-(args.connections - args.broadcast) // args.per_renter) or args.feed_renters
    args.feed_renters = min(args.feed_renters, spread)
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    Redis.from_url(redis_url).flushdb()
    load_before = load_average()
    with (
        tempfile.TemporaryDirectory(prefix="botmarket-events-") as tmp,
        fresh_database(args.mariadb) as database_url,
    ):
        workdir = Path(tmp)
        migrate(database_url)
        started = time.monotonic()
        bench = asyncio.run(seed(database_url, args, spread))
        seed_s = round(time.monotonic() - started, 1)
        print(f"seeded in {seed_s} s", file=sys.stderr)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "FERNET_KEYS": f"bench:{Fernet.generate_key().decode()}",
            "WORKER_METRICS_PORT": "0",
            "PYTHONPATH": str(ROOT),
        }
        env.pop("RATE_LIMIT_PER_MINUTE", None)
        port = free_port()
        receiver_cmd = [
            str(BIN / "uvicorn"),
            "events:receiver",
            "--app-dir",
            str(ROOT / "bench"),
            "--port",
            str(port),
            "--no-access-log",
            "--lifespan",
            "off",
        ]
        receiver_url = f"http://127.0.0.1:{port}/hook"
        with serving(receiver_cmd, env, workdir / "receiver.log", f"http://127.0.0.1:{port}/stats"):
            results: dict[str, dict[str, Any]] = {}
            if args.only == "webhooks":
                webhooks_only_endpoint(bench, env, workdir, receiver_url)
            if args.only is None:
                print("(1)-(3) live stream ...", file=sys.stderr)
                results = live_phases(args, bench, env, workdir)
            if args.only in (None, "feed"):
                print("(4) feed ...", file=sys.stderr)
                results["feed"], _ = feed_phase(args, bench, env, workdir, receiver_url)
            if args.only in (None, "webhooks"):
                print("(5) webhooks ...", file=sys.stderr)
                results["webhooks"] = webhooks_phase(args, bench, env, workdir, receiver_url)
    Redis.from_url(redis_url).flushdb()
    report(args, results, seed_s, load_before)


def report(
    args: argparse.Namespace, results: dict[str, dict[str, Any]], seed_s: float, load_before: str
) -> None:
    print(
        f"\n{os.cpu_count()} CPUs shared by the API, {args.clients} client processes, MariaDB, "
        f"Redis, wrk, the worker and the receiver; open-file limit "
        f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}; load average before / after: "
        f"{load_before} / {load_average()}\n"
    )
    print(table(results))
    summary = {
        "bench": "events",
        "machine_cpus": os.cpu_count(),
        "open_file_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "arguments": vars(args),
        "seed_s": seed_s,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "targets": TARGETS,
        "results": results,
    }
    # A part alone leaves the whole run's figures be: bench/results/events-<part>.json.
    results_file = RESULTS.with_stem(f"events-{args.only}") if args.only else RESULTS
    results_file.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(summary, sort_keys=True)
    results_file.write_text(line + "\n")
    print(line)
    if missed := [name for name, figures in results.items() if not figures["met"]]:
        raise SystemExit(f"targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
