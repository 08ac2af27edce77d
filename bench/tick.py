"""One candle close at scale: from `trading.dispatch` to the last renter's trade.

For each size in --sizes it sets up, from nothing: a fresh MariaDB database (dropped after),
Redis db --redis-db (flushed), the sandbox exchange (`botmarket sandbox`, a subprocess) with
20 ms added to every exchange call, the fake OpenAI/Anthropic/Gemini servers of tests/fakes
answering BUY after 800 ms, and --workers real Celery worker processes of --concurrency
prefork children each, consuming both queues (decide tasks, each a batch of up to
DECIDE_BATCH groups decided at once, on `trading.decide`; the rest on `celery`). It seeds,
in bulk through the models, the rows the API would write: a developer and 25 bots (three
voters each, indicator weight 0, quorum 1: every decision is a BUY), one renter per
subscription spread evenly over 100 (bot, symbol, 1m) groups, 90% paper and 10% testnet,
each testnet renter with stored credentials for a sandbox account of their own, and the
audit rows of those writes. Then it sends `trading.dispatch` once, as beat does, and waits
until every subscription has its trade.

Reported per size: time to the last decision and to the last trade, LLM and klines
requests, the exchange request weight the tick used (the sandbox's own count) against the
governor's budget, orders, trades, duplicates, per-order latency (the attempt's start, its
trade's created_at, -> its last update, the fill; a batch of PAPER_BATCH paper orders start
together and are filled in one transaction) p50/p99, that of testnet orders alone split at
their marking as sent and at the exchange's execution, and each worker process's peak RSS
(VmHWM), and the CPU seconds the workers and the database server used from the dispatch
to the last trade. The last line printed is one JSON object with every figure, also written to
bench/results/tick.json. The exit status is 1 when a size misses a target (TARGETS).

Usage: python bench/tick.py [--sizes 100,1000,10000] [--workers 2] [--concurrency 2]
                            [--deciders 0]
Needs MariaDB (root@127.0.0.1:3306) and Redis (127.0.0.1:6379) running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# This checkout's `app` and `tests` (the fakes), never an installed copy.
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from common import free_port, fresh_database  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from redis import Redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from app.bots.strategy import Strategy  # noqa: E402
from app.core.crypto import Keyring  # noqa: E402
from app.core.db import create_engine, create_sessionmaker, new_id  # noqa: E402
from app.core.migrations import migrate  # noqa: E402
from app.models import (  # noqa: E402
    AuditLog,
    Bot,
    BotVersion,
    Decision,
    ExchangeCredential,
    Subscription,
    Trade,
    User,
)
from app.trading.flows import DECIDE_BATCH, EXECUTE_CONCURRENCY  # noqa: E402
from tests.fakes import serve_fakes  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "tick.json"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT")
GROUPS = 100  # 25 bots x 4 symbols, one timeframe
# Beat dispatches right after a close: the bench waits for a minute to close and sends
# dispatch then, so "after the close" is measured from the close itself.
TIMEFRAME = "1m"
# A 1m decision's orders go stale when the next candle closes; a slow tick is measured, not
# refused: its orders stay sendable for 15 minutes (the cap), as the e2e tests allow too.
FRESHNESS = '{"1m": 900}'
SANDBOX_LATENCY_MS = 20
LLM_LATENCY_S = 0.8
MARIADB_MAX_CONNECTIONS = 151  # the server's default
BUDGET_PER_MINUTE = 5000  # BINANCE_WEIGHT_PER_MINUTE's default: the governor's budget
EXCHANGE_LIMIT_PER_MINUTE = 6000  # what the exchange (and the sandbox) enforces per IP
STRATEGY = {
    "voters": [
        {"provider": "openai", "model": "gpt-4o-mini"},
        {"provider": "anthropic", "model": "claude-haiku-4-5"},
        {"provider": "gemini", "model": "gemini-2.5-flash"},
    ],
    "ensemble": {"indicator_weight": "0", "quorum": 1},
}
FINAL = ("filled", "rejected", "refused")
# What every size's tick must show.
TARGETS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "a final trade for every subscription": lambda r: r["trades"] == r["subscriptions"],
    "last trade <= 20 s after the close": lambda r: (r["last_trade_s"] or math.inf) <= 20,
    f"exactly {GROUPS * len(STRATEGY['voters'])} LLM requests": lambda r: (
        r["llm_requests"] == GROUPS * len(STRATEGY["voters"])
    ),
    "<= 100 klines requests": lambda r: r["klines_requests"] <= 100,
    "no duplicate, in the database or at the exchange": lambda r: (
        r["duplicate_trades"] == 0 and r["exchange_duplicates"] == 0
    ),
    "order latency p99 < 500 ms": lambda r: r["order_latency_ms"]["p99"] < 500,
    "peak RSS of a worker process < 500 MB": lambda r: (r["peak_rss_mb_max"] or math.inf) < 500,
}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- infrastructure --------------------------------------------------------------------------


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def process(
    command: list[str], env: dict[str, str], log: Path, ready: bytes
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the pool children stop with it
        )
        try:
            deadline = time.monotonic() + 60
            while ready not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{command[2:5]} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield proc
        finally:
            _stop(proc)


@dataclass
class SandboxAdmin:
    url: str

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, dict[str, int]]:
        return dict(self.call("GET", "/sandbox/stats"))


def descendants(pid: int) -> list[int]:
    """The process and its children, from /proc (no psutil needed)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most this process ever had resident."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds these processes have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def database_pids() -> list[int]:
    """The local MariaDB (or MySQL) server's process: its CPU is the tick's too."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and (entry / "comm").exists()
        and (entry / "comm").read_text().strip() in {"mariadbd", "mysqld"}
    ]


# -- seeding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    api_key: str
    api_secret: str


async def seed(database_url: str, size: int, keyring: Keyring, accounts: list[Account]) -> None:
    """What the API writes for a developer's 25 bots and `size` renters' subscriptions, in
    bulk: the same rows (users, bots, versions, credentials, subscriptions, audit)."""
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    strategy = Strategy.model_validate(STRATEGY)
    rows: list[Any] = []
    developer = User(id=new_id(), kind="developer", display_name="bench developer")
    rows.append(developer)
    groups = []
    for b in range(GROUPS // len(SYMBOLS)):
        bot = Bot(
            id=new_id(),
            owner_user_id=developer.id,
            name=f"bench bot {b}",
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
        rows += [bot, version, _audit("bot.create", "bot", bot.id, None)]
        groups += [(bot, version, symbol) for symbol in SYMBOLS]
    testnet = iter(accounts)
    for n in range(size):
        bot, version, symbol = groups[n % GROUPS]
        renter = User(
            id=new_id(), principal=f"bench-{n:05d}-{uuid.uuid4().hex[:12]}", kind="renter"
        )
        rows.append(renter)
        credential_id = None
        if n % 10 == 9:  # every tenth renter trades on the (sandbox) testnet
            account = next(testnet)
            credential = ExchangeCredential(
                id=new_id(),
                user_id=renter.id,
                exchange="binance",
                testnet=True,
                api_key_ciphertext=keyring.encrypt(account.api_key),
                api_secret_ciphertext=keyring.encrypt(account.api_secret),
                api_key_last4=account.api_key[-4:],
                fernet_key_id=keyring.primary_key_id,
            )
            credential_id = credential.id
            rows += [credential, _audit("credentials.put", "credentials", credential.id, renter)]
        sub = Subscription(
            id=new_id(),
            user_id=renter.id,
            bot_id=bot.id,
            bot_version_id=version.id,
            credential_id=credential_id,
            symbol=symbol,
            timeframe=TIMEFRAME,
            mode="testnet" if credential_id else "paper",
            quote_amount=Decimal(50),
            risk={},
            status="active",
            ends_at=None,
        )
        rows += [sub, _audit("subscription.create", "subscription", sub.id, renter)]
    # Parents before children, as the API's transactions would have written them.
    order = [User, Bot, BotVersion, ExchangeCredential, Subscription, AuditLog]
    async with sessionmaker() as session:
        for model in order:
            batch = [row for row in rows if isinstance(row, model)]
            for start in range(0, len(batch), 2000):
                session.add_all(batch[start : start + 2000])
                await session.flush()
        await session.commit()
    await engine.dispose()


def _audit(action: str, kind: str, resource_id: str, renter: User | None) -> AuditLog:
    return AuditLog(
        principal=renter.principal if renter else None,
        action=action,
        resource_type=kind,
        resource_id=resource_id,
        request_id=uuid.uuid4().hex,
        outcome="success",
    )


# -- measuring -------------------------------------------------------------------------------


async def progress(database_url: str) -> tuple[int, int]:
    engine = create_engine(database_url, pool=False)
    async with create_sessionmaker(engine)() as session:
        decisions = await session.scalar(select(func.count()).select_from(Decision))
        final = await session.scalar(
            select(func.count()).select_from(Trade).where(Trade.status.in_(FINAL))
        )
    await engine.dispose()
    return int(decisions or 0), int(final or 0)


LEGS = ("claimed_to_sent", "sent_to_executed", "executed_to_recorded")


def testnet_legs(filled: list[Trade], executed_ms: dict[str, int]) -> dict[str, Any]:
    """Where a testnet order's time goes, in ms: from the attempt's start to its being marked
    sent (claim, credentials, sizing), from there to the exchange's execution (the request,
    the 20 ms added, the sandbox's queue), and from the execution to the trade row's last
    update (the response, recording the fill). p50/p99 of each, and the legs of the slowest
    orders (a tail shared by the legs of the same orders is a stall, not one slow step)."""
    orders = []
    for trade in filled:
        executed = executed_ms.get(trade.client_order_id)
        if trade.mode != "testnet" or trade.sent_at is None or executed is None:
            continue
        executed_at = datetime.fromtimestamp(executed / 1000, UTC)
        marks = (trade.created_at, trade.sent_at, executed_at, trade.updated_at)
        orders.append(
            tuple(round((b - a).total_seconds() * 1000, 1) for a, b in itertools.pairwise(marks))
        )
    summary: dict[str, Any] = {
        leg: {
            "p50": round(percentile([o[i] for o in orders], 0.5), 1),
            "p99": round(percentile([o[i] for o in orders], 0.99), 1),
        }
        for i, leg in enumerate(LEGS)
    }
    summary["slowest"] = [list(o) for o in sorted(orders, key=sum, reverse=True)[:5]]
    return summary


async def outcome(
    database_url: str, started: datetime, executed_ms: dict[str, int]
) -> dict[str, Any]:
    engine = create_engine(database_url, pool=False)
    async with create_sessionmaker(engine)() as session:
        decisions = (await session.scalars(select(Decision))).all()
        trades = (await session.scalars(select(Trade))).all()
        duplicates = await session.scalar(
            select(func.count()).select_from(
                select(Trade.subscription_id, Trade.decision_id)
                .group_by(Trade.subscription_id, Trade.decision_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
    await engine.dispose()
    filled = [t for t in trades if t.status == "filled"]
    latencies = {
        mode: [
            (t.updated_at - t.created_at).total_seconds() * 1000 for t in filled if t.mode == mode
        ]
        for mode in ("paper", "testnet")
    }
    every = latencies["paper"] + latencies["testnet"]
    reasons = Counter((t.reason or "")[:100] for t in trades if t.status != "filled")
    return {
        "decisions": len(decisions),
        "actions": sorted({d.action for d in decisions}),
        "last_decision_s": max((d.created_at - started).total_seconds() for d in decisions)
        if decisions
        else None,
        "last_trade_s": max((t.updated_at - started).total_seconds() for t in trades)
        if trades
        else None,
        "trades": len(trades),
        "filled": len(filled),
        "by_status": {s: sum(t.status == s for t in trades) for s in {t.status for t in trades}},
        "duplicate_trades": int(duplicates or 0),
        "unfilled_reasons": dict(reasons.most_common(3)),
        "order_latency_ms": {
            "p50": round(percentile(every, 0.5), 1),
            "p99": round(percentile(every, 0.99), 1),
            "max": round(max(every, default=float("nan")), 1),
            "paper_p99": round(percentile(latencies["paper"], 0.99), 1),
            "testnet_p99": round(percentile(latencies["testnet"], 0.99), 1),
        },
        "testnet_legs_ms": testnet_legs(filled, executed_ms),
    }


# -- one size --------------------------------------------------------------------------------


def run_size(size: int, args: argparse.Namespace, fakes: Any, workdir: Path) -> dict[str, Any]:
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    Redis.from_url(redis_url).flushdb()
    fernet = f"bench:{Fernet.generate_key().decode()}"
    keyring = Keyring.parse(fernet)
    testnet_renters = sum(1 for n in range(size) if n % 10 == 9)
    accounts = [
        Account(f"sbx-{secrets.token_hex(16)}", secrets.token_hex(32))
        for _ in range(testnet_renters)
    ]
    accounts_file = workdir / f"accounts-{size}.json"
    accounts_file.write_text(
        json.dumps(
            [
                {"api_key": a.api_key, "api_secret": a.api_secret, "balances": {"USDT": "1000"}}
                for a in accounts
            ]
        )
    )
    for fake in fakes.all:
        fake.reset(latency_s=LLM_LATENCY_S)
    port = free_port()
    sandbox_cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "sandbox",
        "--port",
        str(port),
        "--accounts",
        str(accounts_file),
    ]
    with (
        fresh_database(args.mariadb) as database_url,
        process(sandbox_cmd, dict(os.environ), workdir / f"sandbox-{size}.log", b"Uvicorn running"),
    ):
        sandbox = SandboxAdmin(f"http://127.0.0.1:{port}")
        sandbox.call("POST", "/sandbox/faults", json={"latency_ms": SANDBOX_LATENCY_MS})
        migrate(database_url)
        seeding = time.monotonic()
        asyncio.run(seed(database_url, size, keyring, accounts))
        seeded_s = time.monotonic() - seeding
        env = {
            **os.environ,
            **{k.upper(): str(v) for k, v in fakes.settings_overrides().items()},
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "FERNET_KEYS": fernet,
            "BINANCE_API_URL": sandbox.url,
            "BINANCE_WEIGHT_PER_MINUTE": str(BUDGET_PER_MINUTE),
            "WORKER_METRICS_PORT": "0",
            "ORDER_FRESHNESS_S": FRESHNESS,
        }
        with contextlib.ExitStack() as stack:
            # (name, prefork children, queues): with deciders, a worker of their own takes the
            # decisions and the others the rest; without, every worker takes both.
            pools = [
                (f"bench{w}", args.concurrency, "celery" if args.deciders else None)
                for w in range(args.workers)
            ]
            if args.deciders:
                pools.append(("deciders", args.deciders, "trading.decide"))
            workers = [
                stack.enter_context(
                    process(
                        [
                            sys.executable,
                            "-m",
                            "celery",
                            "-A",
                            "workers.celery_app",
                            "worker",
                            "--concurrency",
                            str(children),
                            *(["--queues", queues] if queues else []),
                            "--hostname",
                            f"{name}@%h",
                            "--without-gossip",
                            "--without-mingle",
                            "--without-heartbeat",
                            "-l",
                            "INFO",
                        ],
                        env,
                        workdir / f"{name}-{size}.log",
                        b"ready.",
                    )
                )
                for name, children, queues in pools
            ]
            from celery import Celery

            producer = Celery(broker=redis_url)
            before = sandbox.stats()
            close = (int(time.time()) // 60 + 1) * 60
            time.sleep(close - time.time() + 0.05)
            started = datetime.fromtimestamp(close, UTC)
            clock = time.monotonic() - (time.time() - close)
            worker_pids = [pid for proc in workers for pid in descendants(proc.pid)]
            cpu_before = cpu_s(worker_pids), cpu_s(database_pids())
            producer.send_task("trading.dispatch")
            last_change, seen = clock, (-1, -1)
            while True:
                time.sleep(0.5)
                try:
                    now = asyncio.run(progress(database_url))
                except OperationalError as exc:  # e.g. MariaDB's max_connections reached
                    print(f"  progress poll failed: {exc.orig}", file=sys.stderr)
                    continue
                if now != seen:
                    seen, last_change = now, time.monotonic()
                    print(
                        f"  {size}: {time.monotonic() - clock:6.1f} s  "
                        f"decisions {now[0]:3d}  final trades {now[1]:5d}",
                        file=sys.stderr,
                    )
                if now[1] >= size:
                    break
                if time.monotonic() - last_change > args.stall_s:
                    print(f"  {size}: no progress for {args.stall_s} s, stopping", file=sys.stderr)
                    break
            wall_s = time.monotonic() - clock
            cpu = {
                "workers": round(cpu_s(worker_pids) - cpu_before[0], 1),
                "database": round(cpu_s(database_pids()) - cpu_before[1], 1),
            }
            after = sandbox.stats()
            rss = {
                f"worker{w}/{pid}": round(peak_rss_mb(pid), 1)
                for w, proc in enumerate(workers)
                for pid in descendants(proc.pid)
            }
            orders_by_account = [
                sandbox.call("GET", "/sandbox/orders", params={"api_key": a.api_key})
                for a in accounts
            ]
            orders_per_account = [len(orders) for orders in orders_by_account]
            # When the exchange executed each order (its clock is this machine's).
            executed_ms = {
                order["clientOrderId"]: order["transactTime"]
                for orders in orders_by_account
                for order in orders
            }
        result = asyncio.run(outcome(database_url, started, executed_ms))
    requests = {
        k: v - before["requests"].get(k, 0)
        for k, v in after["requests"].items()
        if v - before["requests"].get(k, 0)
    }
    weight = {
        k: v - before["weight"].get(k, 0)
        for k, v in after["weight"].items()
        if v - before["weight"].get(k, 0)
    }
    total_weight = sum(weight.values())
    # A tick shorter than a minute spends all its weight within one of Binance's minutes.
    minutes = max(wall_s, 60.0) / 60
    return {
        "subscriptions": size,
        # Other work on the machine: the figures are only as quiet as it was.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "paper": size - testnet_renters,
        "testnet": testnet_renters,
        "seed_s": round(seeded_s, 1),
        "wall_s": round(wall_s, 2),
        **result,
        "llm_requests": sum(fake.requests for fake in fakes.all),
        "klines_requests": requests.get("GET /api/v3/klines", 0),
        "exchange_orders": requests.get("POST /api/v3/order", 0),
        "exchange_duplicates": sum(max(0, n - 1) for n in orders_per_account),
        "testnet_renters_without_order": sum(n == 0 for n in orders_per_account),
        "exchange_requests": requests,
        "weight_by_endpoint": weight,
        "weight_total": total_weight,
        "weight_without_orders": total_weight - weight.get("POST /api/v3/order", 0),
        "weight_per_minute_avg": round(total_weight / minutes),
        "budget_per_minute": BUDGET_PER_MINUTE,
        "exchange_limit_per_minute": EXCHANGE_LIMIT_PER_MINUTE,
        # CPU seconds the tick took from the workers and the database server: the cost of a
        # change to the writes, steadier than wall time on a machine doing other work too.
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        "peak_rss_mb_max": max(rss.values(), default=None),
    }


def table(results: list[dict[str, Any]]) -> str:
    def row(label: str, pick: Any) -> str:
        return f"{label:<44}" + "".join(f"{pick(r)!s:>14}" for r in results)

    lines = [
        row("subscriptions (paper / testnet)", lambda r: f"{r['paper']}/{r['testnet']}"),
        row(
            "last decision after the close, s",
            lambda r: r["last_decision_s"] and round(r["last_decision_s"], 2),
        ),
        row(
            "last trade after the close, s (target ≤ 20)",
            lambda r: r["last_trade_s"] and round(r["last_trade_s"], 2),
        ),
        row("decisions (actions)", lambda r: f"{r['decisions']} {','.join(r['actions'])}"),
        row("LLM requests (target 300)", lambda r: r["llm_requests"]),
        row("klines requests (target ≤ 100)", lambda r: r["klines_requests"]),
        row("exchange weight, whole tick", lambda r: r["weight_total"]),
        row("  without order placement", lambda r: r["weight_without_orders"]),
        row(
            f"  per minute, avg over ≥ 1 min (budget {BUDGET_PER_MINUTE})",
            lambda r: r["weight_per_minute_avg"],
        ),
        row("exchange orders", lambda r: r["exchange_orders"]),
        row("trades (filled)", lambda r: f"{r['trades']} ({r['filled']})"),
        row(
            "duplicates: db / exchange (target 0)",
            lambda r: f"{r['duplicate_trades']}/{r['exchange_duplicates']}",
        ),
        row("order latency p50, ms", lambda r: r["order_latency_ms"]["p50"]),
        row("order latency p99, ms (target < 500)", lambda r: r["order_latency_ms"]["p99"]),
        row("  testnet orders alone, p99", lambda r: r["order_latency_ms"]["testnet_p99"]),
        *(
            row(
                f"  testnet {leg.replace('_', ' ')}, p50/p99",
                lambda r, leg=leg: "/".join(
                    str(r["testnet_legs_ms"][leg][q]) for q in ("p50", "p99")
                ),
            )
            for leg in LEGS
        ),
        row(
            "  slowest testnet order's legs, ms",
            lambda r: "/".join(str(round(ms)) for ms in r["testnet_legs_ms"]["slowest"][0]),
        ),
        row(
            "CPU s: workers / database server",
            lambda r: f"{r['cpu_s']['workers']}/{r['cpu_s']['database']}",
        ),
        row("peak RSS of a worker process, MB (< 500)", lambda r: r["peak_rss_mb_max"]),
    ]
    header = f"{'':<44}" + "".join(f"{r['subscriptions']:>14}" for r in results)
    return "\n".join([header, *lines])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=2,
        # Two children per core: a decide batch already overlaps its LLM waits on one event
        # loop, and more children only queue for the two cores (2 x 5 put the order p99 at
        # ~0.6 s, and the last trade later; docs/performance.md). Each child holds up to
        # EXECUTE_CONCURRENCY + 1 database connections: 2 x 5 x 11 stays under MariaDB's
        # default max_connections (151); 2 x 8 did not.
        help="prefork children per worker",
    )
    parser.add_argument(
        "--deciders",
        type=int,
        default=0,
        # A decider decides DECIDE_BATCH groups at once: GROUPS / DECIDE_BATCH of them decide a
        # close in one LLM round, fewer in as many rounds as each has batches.
        help="prefork children of one more worker that takes only the decide batches "
        f"(0: every worker takes both queues; {GROUPS // DECIDE_BATCH} decide the bench's "
        f"{GROUPS} groups in one round, if the database connections allow)",
    )
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--mariadb", default="mysql+asyncmy://root@127.0.0.1:3306/")
    parser.add_argument("--stall-s", type=float, default=120.0)
    args = parser.parse_args()
    # What each child may hold at once: an executing one EXECUTE_CONCURRENCY + 1, a decider
    # one per decision of its batch. Past the server's limit, ticks fail with 1040.
    connections = (
        args.workers * args.concurrency * (EXECUTE_CONCURRENCY + 1) + args.deciders * DECIDE_BATCH
    )
    if connections >= MARIADB_MAX_CONNECTIONS:
        parser.error(
            f"the workers may hold {connections} MariaDB connections at once, "
            f"the server allows {MARIADB_MAX_CONNECTIONS}: fewer --concurrency or --deciders"
        )
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="botmarket-tick-") as tmp,
        serve_fakes() as fakes,
    ):
        for size in sizes:
            print(f"tick with {size} subscriptions ...", file=sys.stderr)
            results.append(run_size(size, args, fakes, Path(tmp)))
    print(
        f"\n{args.workers} Celery worker processes x {args.concurrency} prefork children"
        + (f" + 1 x {args.deciders} deciders" if args.deciders else "")
        + f", decide batches of {DECIDE_BATCH} groups, "
        f"{os.cpu_count()} CPUs; sandbox +{SANDBOX_LATENCY_MS} ms, LLM fakes +{LLM_LATENCY_S} s\n"
    )
    print(table(results))
    print(
        f"load average (1 min) at the end of each tick: {[r['load_average_1m'] for r in results]}"
    )
    summary = {
        "bench": "tick",
        "machine_cpus": os.cpu_count(),
        "workers": args.workers,
        "concurrency": args.concurrency,
        "deciders": args.deciders,
        "decide_batch": DECIDE_BATCH,
        "sandbox_latency_ms": SANDBOX_LATENCY_MS,
        "llm_latency_s": LLM_LATENCY_S,
        "groups": GROUPS,
        "timeframe": TIMEFRAME,
        "execute_chunk_size": int(os.environ.get("EXECUTE_CHUNK_SIZE", "100")),
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(summary, sort_keys=True, default=str)
    RESULTS.write_text(line + "\n")
    print(line)
    missed = [
        f"{r['subscriptions']}: {target}"
        for r in results
        for target, met in TARGETS.items()
        if not met(r)
    ]
    if missed:
        raise SystemExit("targets missed: " + "; ".join(missed))


if __name__ == "__main__":
    main()
