"""The worker's metrics: every pool process records, the worker's main process serves the sum.

Pool processes come and go (a task past its hard limit, --max-tasks-per-child, a crash), so
each writes its samples to files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess
mode, chosen by that variable before prometheus_client is first imported: `botmarket worker`
sets it) and one listener in the main process, on METRICS_BIND:WORKER_METRICS_PORT, sums them,
including those of processes that have exited.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_shutdown
from celery.worker import WorkController
from prometheus_client import CollectorRegistry, Counter, Gauge, multiprocess, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.core.jobs import QUEUES, queue_depths
from app.core.settings import get_settings
from app.trading.metrics import TASK_DURATION

log = logging.getLogger(__name__)
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
_started: dict[str, float] = {}

TASKS = Counter("botmarket_tasks", "Celery tasks run, by task and final state", ["task", "state"])
# Beat sends its tasks on a schedule: the last start of a beat-only task (trading.reconcile,
# every RECONCILE_INTERVAL_S) growing old says that beat, or every worker, has stopped.
LAST_STARTED = Gauge(
    "botmarket_task_last_started_timestamp_seconds",
    "Unix time at which a task of this name last started on any worker process",
    ["task"],
    multiprocess_mode="max",
)


class QueueDepths(Collector):
    """The broker's queue depths, read at each scrape by the worker's listener."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "botmarket_queue_depth",
            "Messages waiting in each broker queue, not yet taken by a worker",
            labels=["queue"],
        )
        try:
            depths = queue_depths(self._app, QUEUES)
        except Exception:  # the scrape still answers; the broker's absence shows elsewhere
            log.warning("could not read the queue depths", exc_info=True)
            depths = {}
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        yield family


@worker_init.connect
def _serve(sender: WorkController, **_: object) -> None:
    settings = get_settings()
    if not settings.worker_metrics_port:
        return
    if not os.environ.get(MULTIPROC_DIR):
        # SystemExit: Celery logs and ignores an Exception raised by a signal receiver.
        raise SystemExit(
            f"WORKER_METRICS_PORT is set but {MULTIPROC_DIR} is not: without it each pool "
            "process would count alone; start workers with `botmarket worker`, which sets it "
            "(or set WORKER_METRICS_PORT=0)"
        )
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Only Redis keeps its queues where their depth is a cheap read (app/core/jobs.py).
        registry.register(QueueDepths(sender.app))
    start_http_server(settings.worker_metrics_port, settings.metrics_bind, registry)
    log.info(
        "worker metrics served",
        extra={"bind": settings.metrics_bind, "port": settings.worker_metrics_port},
    )


@worker_process_shutdown.connect
def _forget_live_gauges(pid: int, **_: object) -> None:
    # Counters and histograms of an exited process still count; its live gauges do not.
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.mark_process_dead(pid)


@task_prerun.connect
def _start(task_id: str, task: object, **_: object) -> None:
    _started[task_id] = time.perf_counter()
    LAST_STARTED.labels(getattr(task, "name", "unknown")).set(time.time())


@task_postrun.connect
def _stop(task_id: str, task: object, state: str | None = None, **_: object) -> None:
    TASKS.labels(getattr(task, "name", "unknown"), state or "unknown").inc()
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_DURATION.labels(getattr(task, "name", "unknown")).observe(
            time.perf_counter() - started
        )
