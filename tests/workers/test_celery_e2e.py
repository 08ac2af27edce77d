"""End to end through real Celery worker processes (not eager mode): API -> broker ->
dispatch -> one decision -> orders at the sandbox exchange -> trades, positions, performance.

Runs on Redis + MariaDB, and once on the embedded default (SQLite broker and database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from celery import Celery
from cryptography.fernet import Fernet
from fastapi import FastAPI
from redis import Redis
from sqlalchemy import func, select

from app.api_keys.schemas import Scope
from app.core.migrations import migrate
from app.core.settings import Settings
from app.main import create_app
from app.models import Decision, PerformanceLog, Position, Trade
from tests.api.test_contract import listed_bot
from tests.conftest import fresh_mariadb_database, make_key, redis_db, require_service
from tests.fakes import RunningFakes
from tests.helpers import headers, new_principal
from tests.sandbox_server import SandboxServer

ROOT = Path(__file__).resolve().parents[2]
REDIS_DB = redis_db(1)
ALWAYS_BUY = {
    "voters": [{"provider": "openai", "model": "gpt-4o-mini"}],
    "ensemble": {"indicator_weight": "0", "quorum": 1},
}
# Decides HOLD on every candle: the renters of a test that places its own decisions.
ALWAYS_HOLD = {"voters": [], "ensemble": {"indicator_weight": "0"}}


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    log_dir: Path

    @contextlib.contextmanager
    def worker(
        self, name: str, concurrency: int = 2, queues: str | None = None
    ) -> Iterator[subprocess.Popen[bytes]]:
        """`queues`: those of the app's configuration unless given."""
        with self._process(
            name,
            "worker",
            "--concurrency",
            str(concurrency),
            *(["--queues", queues] if queues else []),
            "--hostname",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            ready=b"ready.",
        ) as process:
            yield process

    @contextlib.contextmanager
    def beat(self) -> Iterator[subprocess.Popen[bytes]]:
        schedule = self.log_dir / "beat-schedule"
        with self._process(
            "beat", "beat", "--schedule", str(schedule), ready=b"beat: Starting"
        ) as process:
            yield process

    @contextlib.contextmanager
    def _process(self, name: str, *args: str, ready: bytes) -> Iterator[subprocess.Popen[bytes]]:
        path = self.log_dir / f"{name}.log"
        log = path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", *args, "-l", "INFO"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL reaches the pool too
        )
        try:
            deadline = time.monotonic() + 60
            while ready not in path.read_bytes():
                assert process.poll() is None, path.read_text()
                assert time.monotonic() < deadline, f"{name} did not start"
                time.sleep(0.2)
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            log.close()

    def send(self, name: str, queue: str = "celery", **kwargs: object) -> None:
        producer = Celery(broker=self.settings.broker_url)
        producer.send_task(name, kwargs=kwargs, queue=queue)


def stack_for(
    database_url: str,
    broker_url: str,
    redis_url: str | None,
    sandbox: SandboxServer,
    fakes: RunningFakes,
    log_dir: Path,
    **overrides: str,
) -> Stack:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "FERNET_KEYS": f"e2e:{Fernet.generate_key().decode()}",
        "BINANCE_API_URL": sandbox.url,
        "OPENAI_API_KEY": "fake-openai-key",
        "OPENAI_BASE_URL": f"{fakes.url}/v1",
        "LLM_TIMEOUT_S": "3",
        "WORKER_METRICS_PORT": "0",
        "BINANCE_RECV_WINDOW_MS": "2000",
        "ORDER_LEASE_S": "3",
        # The embedded broker polls once a second: dispatch -> decide -> execute can take
        # seconds, which at a minute's edge would make a 1m decision stale before its orders.
        "ORDER_FRESHNESS_S": '{"1m": 120}',
        "ORDER_FRESHNESS_CAP_S": "120",
        "DISPATCH_INTERVAL_S": "3600",  # no beat here: the test sends what beat would
        **overrides,
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    # What the workers read from their environment, as the API in this process sees it
    # (init values are not JSON-decoded the way environment values are).
    settings = Settings(
        **{
            k.lower(): json.loads(v) if v.startswith("{") else v
            for k, v in env.items()
            if k.lower() in Settings.model_fields
        }
    )
    migrate(database_url)
    return Stack(settings, env, log_dir)


@contextlib.contextmanager
def redis_mariadb_stack(
    sandbox: SandboxServer,
    fakes: RunningFakes,
    log_dir: Path,
    redis_db: int = REDIS_DB,
    **overrides: str,
) -> Iterator[Stack]:
    """A stack on a database of the local Redis (broker and cache, emptied first) and a new
    MariaDB database. Suites that may run at the same time as another take a Redis database
    of their own: workers on a shared broker would take each other's tasks."""
    require_service("Redis", "127.0.0.1", 6379)
    url = f"redis://127.0.0.1:6379/{redis_db}"
    Redis.from_url(url).flushdb()
    with fresh_mariadb_database() as database_url:
        yield stack_for(database_url, url, url, sandbox, fakes, log_dir, **overrides)


@pytest.fixture
def redis_stack(sandbox: SandboxServer, llm_fakes: RunningFakes, tmp_path: Path) -> Iterator[Stack]:
    with redis_mariadb_stack(sandbox, llm_fakes, tmp_path) as stack:
        yield stack


@pytest.fixture
def embedded_stack(sandbox: SandboxServer, llm_fakes: RunningFakes, tmp_path: Path) -> Stack:
    return stack_for(
        f"sqlite+aiosqlite:///{tmp_path / 'botmarket.db'}",
        f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        None,
        sandbox,
        llm_fakes,
        tmp_path,
    )


@contextlib.asynccontextmanager
async def api(stack: Stack) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(stack.settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield application, http


async def wait_for(probe, within: float = 60.0, every: float = 0.3) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not await probe():
        assert time.monotonic() < deadline, "timed out waiting for the workers"
        await asyncio.sleep(every)


async def count(application: FastAPI, model: type, **where: object) -> int:
    async with application.state.runtime.sessionmaker() as session:
        return int(
            await session.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0
        )


async def setup_renters(
    http: httpx.AsyncClient,
    settings: Settings,
    sandbox: SandboxServer,
    mode: str,
    renters: int,
    strategy: dict = ALWAYS_BUY,
) -> tuple[str, list[tuple[str, str, str]]]:
    developer = await make_key(settings, Scope.developer)
    marketplace = await make_key(settings, Scope.marketplace)
    bot = await listed_bot(http, developer, name="e2e", strategy=strategy)
    made = []
    for _ in range(renters):
        principal = new_principal()
        account = sandbox.new_account(USDT="1000")
        if mode == "testnet":
            stored = await http.put(
                "/api/v1/credentials/binance",
                json={"api_key": account[0], "api_secret": account[1], "testnet": True},
                headers=headers(marketplace, principal),
            )
            assert stored.status_code == 201
        created = await http.post(
            "/api/v1/subscriptions",
            json={
                "bot_id": bot["id"],
                "symbol": "BTCUSDT",
                "timeframe": "1m",
                "mode": mode,
                "quote_amount": "50",
            },
            headers=headers(marketplace, principal),
        )
        assert created.status_code == 201, created.text
        made.append((created.json()["id"], principal, account[0]))
    return marketplace, made


async def test_api_to_orders_through_real_workers_on_redis_and_mariadb(
    redis_stack: Stack, sandbox: SandboxServer, llm_fakes: RunningFakes
) -> None:
    async with api(redis_stack) as (application, http):
        with redis_stack.worker("w1"):
            marketplace, renters = await setup_renters(
                http, redis_stack.settings, sandbox, "testnet", 3
            )
            # Beat's dispatch twice at once, on top of the API's own dispatch per renter.
            redis_stack.send("trading.dispatch")
            redis_stack.send("trading.dispatch")

            async def all_filled() -> bool:
                return await count(application, Trade, status="filled") == len(renters)

            await wait_for(all_filled)
            assert await count(application, Decision) == 1
            assert llm_fakes.openai.requests == 1  # one vote for all renters
            for sub_id, principal, account in renters:
                assert len(sandbox.orders(account)) == 1
                trades = await http.get(
                    f"/api/v1/subscriptions/{sub_id}/trades",
                    headers=headers(marketplace, principal),
                )
                (trade,) = trades.json()["items"]
                assert trade["status"] == "filled" and trade["side"] == "BUY"
                decisions = await http.get(
                    f"/api/v1/subscriptions/{sub_id}/decisions",
                    headers=headers(marketplace, principal),
                )
                assert decisions.json()["items"][0]["votes"][0]["provider"] == "openai"
                performance = await http.get(
                    f"/api/v1/subscriptions/{sub_id}/performance",
                    headers=headers(marketplace, principal),
                )
                assert performance.json()["trade_count"] == 1
            async with application.state.runtime.sessionmaker() as session:
                positions = (await session.scalars(select(Position))).all()
            assert len(positions) == 3 and all(p.quantity > 0 for p in positions)
            redis_stack.send("performance.snapshot")

            async def snapshots() -> bool:
                return await count(application, PerformanceLog) == 3

            await wait_for(snapshots)


async def test_the_embedded_default_runs_a_full_cycle(
    embedded_stack: Stack, sandbox: SandboxServer, llm_fakes: RunningFakes
) -> None:
    async with api(embedded_stack) as (application, http):
        with embedded_stack.worker("embedded", concurrency=1):
            await setup_renters(http, embedded_stack.settings, sandbox, "paper", 2)

            async def filled() -> bool:
                return await count(application, Trade, status="filled") == 2

            await wait_for(filled)
        assert await count(application, Decision) == 1
        assert llm_fakes.openai.requests == 1
