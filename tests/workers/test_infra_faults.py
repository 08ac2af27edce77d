"""The fault suite's infrastructure faults: the broker restarted empty in the middle of a
tick, and the database killing the workers' connections while orders are being placed.

Real processes only: a Redis server of the test's own (on its own port, nothing kept on disk,
so a restart loses every queued and unacknowledged message), MariaDB, beat, a worker, the
sandbox exchange. At the end of each, the money invariants of the fault suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncmy
import asyncmy.errors
import httpx
import pytest
from fastapi import FastAPI
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.api_keys.schemas import Scope
from app.core.key_tokens import digest_api_key
from app.models import ApiKey, AuditLog, Position, Trade
from tests.conftest import MARIADB_HOST, MARIADB_PORT, fresh_mariadb_database, make_key
from tests.fakes import RunningFakes
from tests.helpers import headers, new_principal
from tests.sandbox_server import SandboxServer, free_port
from tests.workers.test_celery_e2e import (
    ALWAYS_HOLD,
    Stack,
    api,
    setup_renters,
    stack_for,
    wait_for,
)
from tests.workers.test_faults import LEASE_S, SWEEP_S, all_trades, assert_money_safe, decide_buy

pytestmark = pytest.mark.slow

LATENCY_MS = 250  # every exchange call takes this long: the fault lands mid-execution


@dataclass
class RedisServer:
    """A redis-server process of the test's own; `restart` comes back empty on the same port."""

    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    *("--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                if Redis.from_url(self.url, socket_timeout=1).ping():
                    return
            except RedisConnectionError:
                assert self.process.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def redis_server(log_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), log_dir / "redis-server.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def infra_stack(
    database_url: str,
    redis_url: str,
    sandbox: SandboxServer,
    fakes: RunningFakes,
    log_dir: Path,
) -> Stack:
    return stack_for(
        database_url,
        redis_url,
        redis_url,
        sandbox,
        fakes,
        log_dir,
        BINANCE_RECV_WINDOW_MS="2000",
        ORDER_LEASE_S=str(LEASE_S),
        RECONCILE_INTERVAL_S=str(SWEEP_S),
        # Every recovery here is the reconciler's, never a redelivery.
        CELERY_VISIBILITY_TIMEOUT_S="600",
    )


async def renters_for(
    http: httpx.AsyncClient, stack: Stack, sandbox: SandboxServer, n: int
) -> list[tuple[str, str, str]]:
    renters = []
    for _ in range(n):  # a bot each: every renter gets a decision of its own
        _, made = await setup_renters(http, stack.settings, sandbox, "testnet", 1, ALWAYS_HOLD)
        renters += made
    return renters


async def filled_for(application: FastAPI, sub_ids: list[str]) -> bool:
    trades = await all_trades(application)
    done = {t.subscription_id for t in trades if t.status == "filled"}
    return set(sub_ids) <= done


@pytest.fixture
def infra(
    sandbox: SandboxServer, llm_fakes: RunningFakes, tmp_path: Path
) -> Iterator[tuple[Stack, RedisServer]]:
    """A stack on MariaDB, the sandbox and a Redis server of its own (broker and cache)."""
    with redis_server(tmp_path) as redis, fresh_mariadb_database() as database_url:
        yield infra_stack(database_url, redis.url, sandbox, llm_fakes, tmp_path), redis


def log_lines(stack: Stack, name: str, marker: str) -> int:
    return (stack.log_dir / f"{name}.log").read_text().count(marker)


async def buy_for(application: FastAPI, stack: Stack, sub_id: str) -> str:
    decision = await decide_buy(application, sub_id)
    await asyncio.to_thread(
        stack.send, "trading.execute", decision_id=decision.id, subscription_ids=[sub_id]
    )
    return decision.id


@pytest.mark.timeout(240)
async def test_redis_restarted_empty_mid_tick_loses_no_order(
    infra: tuple[Stack, RedisServer], sandbox: SandboxServer
) -> None:
    stack, redis = infra
    connected = "Connected to redis://"
    async with api(stack) as (application, http):
        before = await renters_for(http, stack, sandbox, 6)
        after = await renters_for(http, stack, sandbox, 2)
        with stack.beat(), stack.worker("w1"):
            sandbox.admin("POST", "/sandbox/faults", json={"latency_ms": LATENCY_MS})
            for sub_id, _, _ in before:
                await buy_for(application, stack, sub_id)

            async def under_way() -> bool:  # orders on their way, the rest still queued
                return len(await all_trades(application)) >= 1

            await wait_for(under_way, within=30)
            at_kill = await all_trades(application)
            redis.kill()
            down_at = time.monotonic()
            await asyncio.sleep(4)
            redis.start()  # empty: every queued and unacknowledged message is gone
            up_at = time.monotonic()
            sandbox.admin("DELETE", "/sandbox/faults")

            async def reconnected() -> bool:
                return log_lines(stack, "w1", connected) >= 2

            await wait_for(reconnected, within=60)
            reconnect_s = time.monotonic() - up_at
            # New work after the restart: the worker takes it from the new Redis.
            new_decisions = [await buy_for(application, stack, s) for s, _, _ in after]

            async def new_work_done() -> bool:
                return await filled_for(application, [s for s, _, _ in after])

            await wait_for(new_work_done, within=60)
            new_work_s = time.monotonic() - up_at

            async def old_work_done() -> bool:
                return await filled_for(application, [s for s, _, _ in before])

            await wait_for(old_work_done, within=60)
            old_work_s = time.monotonic() - up_at
            trades = await assert_money_safe(application, sandbox, before + after)
    worker_log = (stack.log_dir / "w1.log").read_text()
    assert all(d in worker_log for d in new_decisions)  # consumed as jobs, after the restart
    assert sorted(t.subscription_id for t in trades) == sorted(s for s, _, _ in before + after)
    assert all(t.status == "filled" for t in trades)
    filled_at_kill = sum(t.status == "filled" for t in at_kill)
    assert filled_at_kill < len(before)  # the restart landed mid-tick
    print(
        f"\nredis restart: {len(before)} orders sent before it, {len(at_kill)} attempted and "
        f"{filled_at_kill} filled when it was killed; down {up_at - down_at:.1f} s; worker "
        f"reconnected {reconnect_s:.1f} s after the restart; {len(after)} new orders done "
        f"{new_work_s:.1f} s after, every earlier one {old_work_s:.1f} s after; "
        f"{len(trades)} filled, duplicates 0"
    )


async def kill_connections(database: str) -> int:
    """KILL every connection to `database` (workers' and the API's pools alike); how many."""
    killer = await asyncmy.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root")
    killed = 0
    try:
        async with killer.cursor() as cursor:
            await cursor.execute(
                "SELECT ID FROM information_schema.PROCESSLIST "
                "WHERE DB = %s AND ID <> CONNECTION_ID()",
                (database,),
            )
            for (connection_id,) in await cursor.fetchall():
                try:
                    await cursor.execute(f"KILL {int(connection_id)}")
                    killed += 1
                except asyncmy.errors.OperationalError:
                    pass  # gone by itself meanwhile
    finally:
        killer.close()
    return killed


async def kill_under_a_statement(database: str) -> tuple[int, int]:
    """Hold the trades table until statements of the workers wait for it, then KILL every
    connection: those statements die in flight, not idle in a pool. How many statements were
    waiting, and how many connections were killed."""
    locker = await asyncmy.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", db=database)
    watcher = await asyncmy.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root")
    try:
        async with locker.cursor() as lock, watcher.cursor() as watch:
            await lock.execute("LOCK TABLES trades WRITE")
            deadline = time.monotonic() + 20
            while True:
                await watch.execute(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                    "WHERE DB = %s AND STATE LIKE 'Waiting for table%%'",
                    (database,),
                )
                (waiting,) = await watch.fetchone()
                if waiting:
                    break
                assert time.monotonic() < deadline, "no statement waited for the trades table"
                await asyncio.sleep(0.05)
        # The locker's too, which lets go of the table.
        return int(waiting), await kill_connections(database)
    finally:
        locker.close()
        watcher.close()


async def assert_rows_whole(application: FastAPI) -> None:
    """No half-written row: a filled trade carries its whole fill and its position holds it,
    an unfilled one says why, and every trade has the audit rows of what happened to it."""
    async with application.state.runtime.sessionmaker() as session:
        trades = (await session.scalars(select(Trade))).all()
        positions = {p.subscription_id: p for p in (await session.scalars(select(Position)))}
        audits = (await session.execute(select(AuditLog.resource_id, AuditLog.action))).all()
    actions: dict[str | None, set[str]] = {}
    for resource_id, action in audits:
        actions.setdefault(resource_id, set()).add(action)
    for trade in trades:
        assert "order.attempt" in actions.get(trade.id, set()), trade.id
        if trade.status != "filled":
            assert trade.reason and f"order.{trade.status}" in actions[trade.id], trade.id
            continue
        assert "order.filled" in actions[trade.id], trade.id
        assert trade.sent_at is not None and trade.exchange_order_id is not None
        assert trade.quantity and trade.quantity > 0 and trade.price and trade.price > 0
        assert trade.quote_quantity and trade.fee is not None and trade.fee_asset
        # One BUY per subscription here: its position is that fill, less a fee paid in BTC.
        fee_in_base = trade.fee if trade.fee_asset == "BTC" else 0
        assert positions[trade.subscription_id].quantity == trade.quantity - fee_in_base


@pytest.mark.timeout(240)
async def test_mariadb_connections_killed_mid_tick_leave_no_half_written_row(
    infra: tuple[Stack, RedisServer], sandbox: SandboxServer
) -> None:
    stack, _ = infra
    database = make_url(stack.settings.database_url).database
    assert database is not None
    async with api(stack) as (application, http):
        during = await renters_for(http, stack, sandbox, 8)
        later = await renters_for(http, stack, sandbox, 2)
        with stack.beat(), stack.worker("w1"):
            sandbox.admin("POST", "/sandbox/faults", json={"latency_ms": LATENCY_MS})
            for sub_id, _, _ in during:
                await buy_for(application, stack, sub_id)

            async def under_way() -> bool:
                return len(await all_trades(application)) >= 1

            await wait_for(under_way, within=30)
            kills, killed, waiting = [], [], 0
            first_kill = time.monotonic()
            for round_ in range(8):  # through the tick: claims, sends, recordings
                if round_ == 0:  # the first while statements wait: they die in flight
                    waiting, count = await kill_under_a_statement(database)
                else:
                    count = await kill_connections(database)
                killed.append(count)
                kills.append(await all_trades(application))
                await asyncio.sleep(0.5)
            last_kill = time.monotonic()
            sandbox.admin("DELETE", "/sandbox/faults")

            async def tick_done() -> bool:
                return await filled_for(application, [s for s, _, _ in during])

            await wait_for(tick_done, within=60)
            tick_s = time.monotonic() - last_kill
            # The pools recovered: later work goes through as usual.
            for sub_id, _, _ in later:
                await buy_for(application, stack, sub_id)

            async def later_done() -> bool:
                return await filled_for(application, [s for s, _, _ in later])

            await wait_for(later_done, within=60)
            later_s = time.monotonic() - last_kill
            trades = await assert_money_safe(application, sandbox, during + later)
            await assert_rows_whole(application)
    assert sorted(t.subscription_id for t in trades) == sorted(s for s, _, _ in during + later)
    assert all(t.status == "filled" for t in trades)
    filled_at_first_kill = sum(t.status == "filled" for t in kills[0])
    assert filled_at_first_kill < len(during)  # the kills landed mid-tick
    worker_log = (stack.log_dir / "w1.log").read_text()
    # Tasks whose connection died under a statement (the rest were idle: pre-ping's case).
    failed = [line for line in worker_log.splitlines() if "raised unexpected:" in line]
    mid_query = sum("OperationalError" in line for line in failed)
    print(
        f"\nmariadb kills: {len(kills)} rounds over {last_kill - first_kill:.1f} s, the first "
        f"with {waiting} statements waiting for the trades table, "
        f"{sum(killed)} connections killed {killed} ({mid_query} tasks failed under a "
        "statement); "
        f"{len(during)} orders in the tick "
        f"({len(kills[0])} attempted, {filled_at_first_kill} filled at the first kill), "
        f"all filled {tick_s:.1f} s after the last kill; {len(later)} later orders done "
        f"{later_s:.1f} s after it; {len(trades)} filled, duplicates 0"
    )
    assert all(killed), killed  # every round found connections to kill and killed them
    # Statements were in flight when their connections were killed, not only idle ones in a
    # pool. How many tasks then logged a failure depends on timing (which statement was
    # waiting, and whether its connection's kill came before its task gave up waiting): on a
    # busy machine it can be none. The money and row checks above hold either way, so the
    # count is reported, not required.
    assert waiting >= 1


@pytest.mark.timeout(120)
async def test_the_api_hears_revocations_again_after_a_redis_restart(
    infra: tuple[Stack, RedisServer],
) -> None:
    """Another API process publishes each revocation; this one must keep listening across a
    Redis restart, or a revoked key keeps working here until its cache entry runs out."""
    stack, redis = infra
    settings = stack.settings.model_copy(update={"api_key_cache_ttl_s": 5.0})
    async with api(Stack(settings, stack.env, stack.log_dir)) as (application, http):
        token = await make_key(settings, Scope.marketplace)
        principal = new_principal()

        async def status() -> int:
            listed = await http.get("/api/v1/subscriptions", headers=headers(token, principal))
            return listed.status_code

        assert await status() == 200
        channel = application.state.runtime.authenticator.changes.channel
        redis.kill()
        await asyncio.sleep(2)
        redis.start()
        client = Redis.from_url(redis.url)

        async def listening() -> bool:
            numsub = await asyncio.to_thread(client.pubsub_numsub, channel)
            return bool(numsub[0][1])

        await wait_for(listening, within=20)

        async def answering() -> bool:
            # Not this test's subject: a request on a pooled Redis connection that died with
            # the server can still fail once (the rate limiter's MULTI is not retried).
            return await status() == 200

        await wait_for(answering, within=10)  # and now cached for the next 5 s
        digest = digest_api_key(token)
        async with application.state.runtime.sessionmaker() as session:
            key = await session.scalar(select(ApiKey).where(ApiKey.key_digest == digest))
            assert key is not None
            key.revoked_at = datetime.now(UTC)
            await session.commit()
        await asyncio.to_thread(client.publish, channel, digest)
        await asyncio.sleep(0.5)
        assert await status() == 401  # evicted at once, not when the TTL ran out
