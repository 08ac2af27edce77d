"""`botmarket backtest` end to end: a real process on the test database and the sandbox,
with the progress line, the summary table and the HTML report."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx

from app.core.settings import Settings
from tests.backtests.conftest import make_bot
from tests.sandbox_server import SandboxServer


async def botmarket(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    # In a thread: the test's event loop serves nothing the process needs, but must not block.
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


async def test_the_cli_runs_a_backtest_and_writes_the_report(
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    sandbox: SandboxServer,
    tmp_path: Path,
) -> None:
    bot = await make_bot(client, developer_key)
    report = tmp_path / "out.html"
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "BINANCE_API_URL": sandbox.url,
        "REDIS_URL": settings.redis_url or "",
    }
    done = await botmarket(
        "backtest",
        "--bot",
        bot["id"],
        "--symbol",
        "BTCUSDT",
        "--timeframe",
        "1h",
        "--from",
        "2026-01-01",
        "--to",
        "2026-02-01",
        "--llm",
        "indicators",
        "--quote",
        "1000",
        "--report",
        str(report),
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "100% 744/744 candles" in done.stderr
    for label in ("total return", "buy and hold return", "max drawdown", "Sharpe (annualised)"):
        assert label in done.stdout
    assert "744 candles replayed" in done.stdout
    page = report.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "drawdown %" in page
    assert "http" not in page.split("<svg", 1)[0]  # nothing fetched from the network


async def test_the_cli_refuses_an_unknown_bot(
    client: httpx.AsyncClient, settings: Settings, sandbox: SandboxServer, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "BINANCE_API_URL": sandbox.url}
    done = await botmarket(
        "backtest",
        "--bot",
        "nope",
        "--symbol",
        "BTCUSDT",
        "--timeframe",
        "1h",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-02",
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode != 0 and "no bot nope" in done.stderr
