"""Serving the engine's metrics from each worker process, and timing every task."""

from __future__ import annotations

import logging
import time

from billiard.process import current_process
from celery.signals import task_postrun, task_prerun
from prometheus_client import start_http_server

from app.trading.metrics import TASK_DURATION

log = logging.getLogger(__name__)
_started: dict[str, float] = {}


def serve(base_port: int) -> None:
    """Each pool process serves its own registry on base_port + its index (0 turns it off)."""
    if not base_port:
        return
    port = base_port + (getattr(current_process(), "index", 0) or 0)
    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as exc:  # another process holds the port: say so, keep working
        log.warning("worker metrics not served", extra={"port": port, "error": str(exc)})
        return
    log.info("worker metrics served", extra={"port": port})


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
