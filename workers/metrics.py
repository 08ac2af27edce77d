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

from celery.signals import task_postrun, task_prerun, worker_init, worker_process_shutdown
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from app.core.settings import get_settings
from app.trading.metrics import TASK_DURATION

log = logging.getLogger(__name__)
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
_started: dict[str, float] = {}


@worker_init.connect
def _serve(**_: object) -> None:
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
def _start(task_id: str, **_: object) -> None:
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _stop(task_id: str, task: object, **_: object) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_DURATION.labels(getattr(task, "name", "unknown")).observe(
            time.perf_counter() - started
        )
