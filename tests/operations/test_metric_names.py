"""Every metric a dashboard panel or an alert reads is one the service exports: a real API
process and a real worker (on Redis, as deployed) are scraped after the facts the panels show
have happened, and each series name of each query is found in one of the two scrapes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from app.api_keys.schemas import Scope
from app.core.migrations import head_revision
from tests.conftest import make_key, require_service
from tests.fakes import RunningFakes
from tests.helpers import api_processes
from tests.operations.queries import alert_exprs, dashboard_exprs, metric_names
from tests.sandbox_server import SandboxServer, free_port
from tests.webhooks.conftest import Receiver, register
from tests.webhooks.conftest import receiver as receiver
from tests.workers.test_celery_e2e import REDIS_DB, Stack, setup_renters, stack_for, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Series Prometheus makes itself for every scrape target.
SYNTHETIC = {"up"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}


def exported(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The series names of a scrape with their samples; a metric declared without samples
    (a labelled one never used: `# HELP`/`# TYPE` only) is there with none."""
    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES[family.type]:
            series.setdefault(family.name + suffix, [])
        for sample in family.samples:
            series.setdefault(sample.name, []).append((sample.labels, sample.value))
    return series


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    return exported(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)


def value(
    series: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float | None:
    matching = [v for found, v in series.get(name, []) if labels.items() <= found.items()]
    return sum(matching) if matching else None


@contextlib.contextmanager
def deployment(
    sandbox: SandboxServer, fakes: RunningFakes, directory: Path
) -> Iterator[tuple[Stack, str, int, int]]:
    """An API process and a worker on the local Redis (broker and cache) and a SQLite
    database, each with its metrics listener on a port of its own."""
    require_service("Redis", "127.0.0.1", 6379)
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    Redis.from_url(redis_url).flushdb()
    (directory / "metrics").mkdir()
    api_port, worker_port = free_port(), free_port()
    stack = stack_for(
        f"sqlite+aiosqlite:///{directory / 'botmarket.db'}",
        redis_url,
        redis_url,
        sandbox,
        fakes,
        directory,
        METRICS_PORT=str(api_port),
        WORKER_METRICS_PORT=str(worker_port),
        # What `botmarket worker` sets: the pool processes' samples, summed by the listener.
        PROMETHEUS_MULTIPROC_DIR=str(directory / "metrics"),
    )
    api_env = {k: v for k, v in stack.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with api_processes(api_env, directory, 1) as [url], stack.worker("ops", concurrency=2):
        yield stack, url, api_port, worker_port


async def drive(
    stack: Stack, url: str, sandbox: SandboxServer, worker_port: int, receiver: Receiver
) -> None:
    """A renter's paper trade, its webhook delivered, and reconciler sweeps."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        # The marketplace's webhook first, so that it hears of the renter's first trade.
        marketplace = await make_key(stack.settings, Scope.marketplace, "ops")
        await register(http, marketplace, receiver.url)
        await setup_renters(http, stack.settings, sandbox, "paper", 1)

        async def delivered_and_swept() -> bool:
            # What beat would send (no beat here).
            for task in ("events.sequence", "webhooks.dispatch", "trading.reconcile"):
                await asyncio.to_thread(stack.send, task)
            swept = value(scrape(worker_port), "botmarket_reconciler_sweeps_total")
            return bool(receiver.ids()) and bool(swept)

        await wait_for(delivered_and_swept, within=120, every=2)


def test_every_dashboard_and_alert_query_names_an_exported_metric(
    sandbox: SandboxServer, llm_fakes: RunningFakes, receiver: Receiver, tmp_path: Path
) -> None:
    started = time.time()
    with deployment(sandbox, llm_fakes, tmp_path) as (stack, url, api_port, worker_port):
        asyncio.run(drive(stack, url, sandbox, worker_port, receiver))
        api, worker = scrape(api_port), scrape(worker_port)

    # The facts the dashboards show, as the worker counted them.
    assert value(worker, "botmarket_decisions_total")
    assert value(worker, "botmarket_orders_total", mode="paper", result="filled") == 1
    assert value(worker, "botmarket_llm_votes_total", provider="openai")
    assert value(worker, "botmarket_webhook_deliveries_total", result="delivered")
    assert value(worker, "botmarket_tasks_total", task="trading.reconcile", state="SUCCESS")
    last_sweep = value(
        worker, "botmarket_task_last_started_timestamp_seconds", task="trading.reconcile"
    )
    assert last_sweep is not None and last_sweep >= started
    assert value(worker, "botmarket_queue_depth", queue="trading.decide") is not None
    assert value(api, "botmarket_build_info", schema_revision=head_revision()) == 1

    names = set(api) | set(worker) | SYNTHETIC
    queries = {**dashboard_exprs(), **alert_exprs()}
    missing = {
        where: sorted(metric_names(expr) - names)
        for where, expr in queries.items()
        if metric_names(expr) - names
    }
    assert missing == {}
