"""The one Celery app, configured from settings.

Tasks default to acks_late + reject_on_worker_lost (a task whose worker dies is redelivered,
not lost) and carry ids only; every task is safe to run twice. On Redis an unacknowledged
task of a dead worker comes back after the visibility timeout, which must be longer than the
hard time limit of every task: settings check the default limit when they load, and a worker
checks every registered task's own limit before it starts.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging, worker_init
from kombu import Queue

from app.core.jobs import QUEUES, TASK_ROUTES
from app.core.logging import configure_logging
from app.core.redis_clients import broker_tls
from app.core.settings import get_settings
from workers import metrics  # noqa: F401 - its signal receivers: the listener, task timings
from workers.schedule import beat_schedule

settings = get_settings()


@setup_logging.connect
def _json_logs(**_: object) -> None:
    # Connected, this replaces Celery's own logging setup: one JSON line per event.
    configure_logging(settings.log_level)


celery_app = Celery(
    "botmarket",
    broker=settings.broker_url,
    include=[
        "workers.tasks.trading",
        "workers.tasks.subscriptions",
        "workers.tasks.performance",
        "workers.tasks.idempotency",
        "workers.tasks.backtests",
        "workers.tasks.events",
        "workers.tasks.webhooks",
        "workers.tasks.verification",
    ],
)
celery_app.conf.update(
    task_queues=tuple(Queue(name) for name in QUEUES),
    task_routes=TASK_ROUTES,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_time_limit=settings.celery_task_time_limit_s,
    task_soft_time_limit=settings.celery_task_soft_time_limit_s,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_use_ssl=broker_tls(settings) or None,
    # Kombu's SQLAlchemy transport hands its options to create_engine: Redis gets them only.
    broker_transport_options=(
        {"visibility_timeout": settings.celery_visibility_timeout_s}
        if settings.broker_url.startswith("redis")
        else {}
    ),
    beat_schedule=beat_schedule(settings),
    timezone="UTC",
    enable_utc=True,
)


def longest_hard_time_limit(app: Celery) -> tuple[str, float]:
    """The registered task with the longest hard time limit, and that limit in seconds."""
    limits = {name: task.time_limit or app.conf.task_time_limit for name, task in app.tasks.items()}
    return max(limits.items(), key=lambda item: item[1])


def refuse_early_redelivery(app: Celery, visibility_timeout_s: float) -> None:
    name, limit = longest_hard_time_limit(app)
    if limit >= visibility_timeout_s:
        # SystemExit: Celery logs and ignores an Exception raised by a signal receiver.
        raise SystemExit(
            f"CELERY_VISIBILITY_TIMEOUT_S ({visibility_timeout_s:g}) must exceed the hard time "
            f"limit of task {name} ({limit:g} s): Redis would hand it to a second worker while "
            "it still runs"
        )


@worker_init.connect
def _check_redelivery(**_: object) -> None:
    # The tasks are registered by now (the worker imported the `include` modules first).
    refuse_early_redelivery(celery_app, settings.celery_visibility_timeout_s)
