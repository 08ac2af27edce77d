"""A worker's metrics are one listener summing every pool process, gone ones included:
`botmarket worker` as an operator runs it, with pool processes that live one task each."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from celery import Celery
from cryptography.fernet import Fernet

from app.core.migrations import migrate
from tests.sandbox_server import free_port

ROOT = Path(__file__).resolve().parents[2]
TASKS = 4
EARLIER_RUN = "TASK_DURATION.labels('idempotency.purge').observe(1)"
ONE_TASK_EACH = ("--max-tasks-per-child", "1", "--without-gossip", "--without-mingle")


def scraped_count(port: int, task: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    sample = rf'^botmarket_task_duration_seconds_count{{task="{task}"}} (\S+)$'
    found = re.search(sample, text, flags=re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_one_listener_sums_every_pool_process_including_exited_ones(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'botmarket.db'}"
    broker_url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    migrate(database_url)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "FERNET_KEYS": f"k1:{Fernet.generate_key().decode()}",
        "WORKER_METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    # A sample left in the directory by an earlier run must not be counted.
    (tmp_path / "metrics").mkdir()
    subprocess.run(
        [sys.executable, "-c", f"from app.trading.metrics import TASK_DURATION; {EARLIER_RUN}"],
        env=env,
        check=True,
    )
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        # Each pool process runs one task and exits: its samples must outlive it.
        [sys.executable, "-m", "app.cli", "worker", "--concurrency", "2", *ONE_TASK_EACH],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        producer = Celery(broker=broker_url)
        for _ in range(TASKS):
            producer.send_task("idempotency.purge")
        deadline = time.monotonic() + 90
        while scraped_count(port, "idempotency.purge") < TASKS:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.5)
        assert scraped_count(port, "idempotency.purge") == TASKS
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        log.close()


def test_a_worker_with_metrics_but_no_multiprocess_directory_refuses_to_start(
    tmp_path: Path,
) -> None:
    # Started with `celery` directly, not `botmarket worker`: each pool process would count
    # alone and the listener would serve a fraction of the truth.
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"} | {
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'botmarket.db'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        "WORKER_METRICS_PORT": str(free_port()),
    }
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-c", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 1
    assert "WORKER_METRICS_PORT is set but PROMETHEUS_MULTIPROC_DIR is not" in worker.stderr
