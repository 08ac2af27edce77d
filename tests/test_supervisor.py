"""The commands as an operator runs them, as real processes: `botmarket run` stops every child
on SIGTERM (a service manager, `timeout`, docker stop) exactly as on Ctrl-C, so no sandbox,
API, worker or stream process is left behind to keep trading; `botmarket serve` logs each
request once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from app.core.db import create_engine
from app.core.migrations import migrate
from app.core.settings import Settings
from app.core.signing import generate_seed
from app.models import ApiKey
from app.supervisor import seed_in_development
from tests.conftest import REDIS_URL, fresh_mariadb_database
from tests.sandbox_server import SandboxServer, free_port

ROOT = Path(__file__).resolve().parents[1]


def children_of(pid: int) -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:  # the process ended while we looked
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.add(int(status.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def wait_until_live(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, "the process exited on its own"
        assert time.monotonic() < deadline, "the API did not come up"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def test_sigterm_stops_every_child(sandbox: SandboxServer, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'botmarket.db'}",
        "BINANCE_API_URL": sandbox.url,  # no sandbox child: the test's own serves
        "BINANCE_STREAM_URL": sandbox.url.replace("http://", "ws://"),
        "API_PORT": str(port),
        "WORKER_METRICS_PORT": "0",
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_live(run, port)
        children = children_of(run.pid)
        assert len(children) == 3  # the API, the worker and the market streams
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in children if alive(pid)], "children outlived botmarket run"
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of the group
            os.killpg(run.pid, signal.SIGKILL)


def test_serve_logs_each_request_once(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'botmarket.db'}",
    }
    serve = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("wb"),
    )
    try:
        wait_until_live(serve, port)
        request_id = "one-request-one-line"
        answer = httpx.get(
            f"http://127.0.0.1:{port}/health/live", headers={"X-Request-ID": request_id}
        )
        assert answer.headers["X-Request-ID"] == request_id
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    about_it = [line for line in lines if line["request_id"] == request_id]
    assert [(line["logger"], line.get("route")) for line in about_it] == [
        ("botmarket.access", "/health/live")
    ]


def production_settings(database_url: str) -> Settings:
    return Settings(
        environment="production",
        database_url=database_url,
        redis_url=REDIS_URL,
        fernet_keys=f"k1:{Fernet.generate_key().decode()}",
        signing_keys=f"k1:{generate_seed()}",
        metrics_port=free_port(),
    )


async def api_key_count(database_url: str) -> int:
    engine = create_engine(database_url, pool=False)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(ApiKey)) or 0)
    finally:
        await engine.dispose()


def test_run_never_seeds_the_demo_into_a_production_database() -> None:
    # A production database on its first day has no key yet: exactly what the demo seeds into
    # in development, and where printed demo keys would let anyone in.
    with fresh_mariadb_database() as url:
        migrate(url)
        assert seed_in_development(production_settings(url), Decimal(60000)) is None
        assert asyncio.run(api_key_count(url)) == 0


def test_run_seeds_the_demo_into_a_fresh_development_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'botmarket.db'}"
    migrate(url)
    settings = Settings(database_url=url, fernet_keys=f"k1:{Fernet.generate_key().decode()}")
    assert seed_in_development(settings, Decimal(60000)) is not None
    assert asyncio.run(api_key_count(url)) == 2  # the demo's admin and marketplace keys
