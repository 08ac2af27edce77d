"""`botmarket run`: the whole service in one foreground command.

Migrates, seeds the demo on first start (in development only), then runs the sandbox
exchange (in development, unless BINANCE_API_URL points elsewhere; its streams too), the
API, a Celery worker with embedded beat, and the market-stream process as child processes.
Ctrl-C or SIGTERM stops them all; if one dies, the others are stopped and the exit says which.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from app.core.db import create_engine, create_sessionmaker, session_scope
from app.core.migrations import migrate
from app.core.settings import Environment, Settings
from app.demo import DemoSeed, seed_demo
from app.sandbox.market import Market

SANDBOX_PORT = 8900


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def seed_in_development(settings: Settings, btc_price: Decimal | None) -> DemoSeed | None:
    """The demo's keys, bot and subscription, on a development database that has no key yet.

    Never in production: a database without keys there is a deployment on its first day, and
    demo keys printed to a terminal would open it to anyone who read them.
    """
    if settings.environment is not Environment.development:
        return None

    async def work() -> DemoSeed | None:
        engine = create_engine(settings.database_url, pool=False)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                return await seed_demo(session, settings, btc_price)
        finally:
            await engine.dispose()

    return asyncio.run(work())


def _banner(settings: Settings, seed: DemoSeed | None) -> str:
    base = f"http://{settings.api_host}:{settings.api_port}"
    lines = ["", f"botmarket is starting: Swagger UI at {base}/docs"]
    if seed is not None:
        lines += [
            "First start: seeded a demo bot (BTCUSDT 1m) and a paper subscription"
            + (" holding 0.005 BTC." if seed.holds_btc else "."),
            f"  admin key (shown once):       {seed.admin_key}",
            f"  marketplace key (shown once): {seed.marketplace_key}",
            f"  demo renter principal:        {seed.principal}",
            "See the demo's trades (decisions every minute; a trade within a few):",
            f'  curl -s -H "X-API-Key: {seed.marketplace_key}" '
            f'-H "X-Principal-ID: {seed.principal}" '
            f"{base}/api/v1/subscriptions/{seed.subscription_id}/trades",
            f"  (and .../{seed.subscription_id}/decisions)",
        ]
    elif settings.environment is Environment.development:
        lines.append("Existing database: no demo seeded (delete ./var to start over).")
    if not settings.configured_llm_providers():
        lines.append("No LLM provider key is set: decisions are indicator-only and say so.")
    return "\n".join(lines) + "\n"


def run(settings: Settings) -> int:
    # SIGTERM (a service manager, `timeout`, `docker stop`) stops the children exactly as
    # Ctrl-C does; by default it would end this process alone and leave them trading.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    migrate()
    # In development without BINANCE_API_URL the exchange is the sandbox; in production that
    # means Binance itself, never a stand-in.
    on_sandbox = settings.environment is Environment.development and not settings.binance_api_url
    # On the sandbox the price is known before it starts: its market is a function of time.
    btc_price = Market().price("BTCUSDT", int(time.time() * 1000)) if on_sandbox else None
    print(_banner(settings, seed_in_development(settings, btc_price)), flush=True)
    env = dict(os.environ)
    python = sys.executable
    commands: list[tuple[str, list[str], dict[str, str]]] = []
    if on_sandbox:
        env["BINANCE_API_URL"] = f"http://127.0.0.1:{SANDBOX_PORT}"
        env["BINANCE_STREAM_URL"] = f"ws://127.0.0.1:{SANDBOX_PORT}"
        sandbox = [python, "-m", "app.sandbox", "--port", str(SANDBOX_PORT)]
        commands.append(("sandbox", sandbox, env))
    worker = ["worker", "--beat", "--concurrency", "2", "--schedule", "var/celerybeat-schedule"]
    # The worker's pool processes share their metrics through files, beside the database
    # rather than in a new temporary directory on every start. The worker's alone: the API
    # keeps its metrics in memory, and would otherwise write files in a directory the worker
    # empties as it starts.
    worker_env = {"PROMETHEUS_MULTIPROC_DIR": str(Path("var/worker-metrics").resolve()), **env}
    commands += [
        ("api", [python, "-m", "app.cli", "serve"], env),
        ("worker", [python, "-m", "app.cli", *worker], worker_env),
        ("stream", [python, "-m", "app.cli", "stream"], env),
    ]
    # Fixed argument lists of our own programs; no shell, nothing from outside.
    children = [
        Child(name, subprocess.Popen(argv, env=child_env))  # noqa: S603
        for name, argv, child_env in commands
    ]
    try:
        while True:
            for child in children:
                code = child.process.poll()
                if code is not None:
                    print(
                        f"botmarket run: {child.name} exited with code {code}; stopping the others",
                        file=sys.stderr,
                        flush=True,
                    )
                    _stop(children)
                    return code or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("botmarket run: stopping", file=sys.stderr, flush=True)
        _stop(children)
        return 0


def _stop(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for child in children:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
