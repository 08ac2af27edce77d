"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from app.core.principals import encode_principal

ROOT = Path(__file__).resolve().parents[1]


def new_principal() -> str:
    return encode_principal(secrets.token_bytes(10))


def headers(
    key: str, principal: str | None = None, idempotency_key: str | None = None
) -> dict[str, str]:
    result = {"X-API-Key": key}
    if principal is not None:
        result["X-Principal-ID"] = principal
    if idempotency_key is not None:
        result["Idempotency-Key"] = idempotency_key
    return result


def fake_binance_key() -> tuple[str, str]:
    """Random key material shaped like Binance's (64 alphanumerics); never a real key."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    make = lambda: "".join(secrets.choice(alphabet) for _ in range(64))  # noqa: E731
    return make(), make()


@dataclass
class Clock:
    """Time as the executor sees it, moved by the test (leases, decision freshness)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @classmethod
    def real(cls) -> Clock:
        return cls(datetime.now(UTC))


@contextlib.contextmanager
def api_processes(env: Mapping[str, str], directory: Path, count: int) -> Iterator[list[str]]:
    """`count` API processes (`botmarket serve`, uvicorn) started together, each on a free
    loopback port and configured by `env` alone; yields their base URLs once every
    /health/ready answers, and stops them afterwards. Each logs to api-N.log in `directory`,
    their working directory: a development default (./var) never lands in the repo."""
    from tests.sandbox_server import free_port

    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for number in range(1, count + 1):
            port, log_path = free_port(), directory / f"api-{number}.log"
            serve = ("serve", "--host", "127.0.0.1", "--port", str(port))
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "app.cli", *serve],
                    cwd=directory,
                    env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            started.append((process, f"http://127.0.0.1:{port}", log_path))
        deadline = time.monotonic() + 60
        for process, url, log_path in started:
            while not _ready(url):
                assert process.poll() is None, f"the API exited: {log_path.read_text()}"
                assert time.monotonic() < deadline, f"the API did not start: {log_path.read_text()}"
                time.sleep(0.2)
        yield [url for _, url, _ in started]
    finally:
        for process, _, _ in started:
            process.send_signal(signal.SIGTERM)
        for process, _, _ in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def running(
    command: list[str], ready: Callable[[], bool], what: str, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` started, yielded once `ready()` holds, and terminated afterwards."""
    process = subprocess.Popen(command, **popen)
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert process.poll() is None, f"{what} exited"
            assert time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=15)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
