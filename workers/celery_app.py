"""The one Celery app, configured from settings.

Tasks default to acks_late + reject_on_worker_lost (a task whose worker dies is redelivered,
not lost) and carry ids only; every task is safe to run twice. On Redis an unacknowledged
task of a dead worker comes back after the visibility timeout, chosen here longer than the
hard time limit of any task.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging

from app.core.logging import configure_logging
from app.core.settings import get_settings
from workers.schedule import beat_schedule

HARD_TIME_LIMIT_S = 300  # CELERY_VISIBILITY_TIMEOUT_S (600) stays above it
SOFT_TIME_LIMIT_S = 240

settings = get_settings()


@setup_logging.connect
def _json_logs(**_: object) -> None:
    # Connected, this replaces Celery's own logging setup: one JSON line per event.
    configure_logging(settings.log_level)


celery_app = Celery(
    "botmarket",
    broker=settings.broker_url,
    include=["workers.tasks.trading", "workers.tasks.idempotency", "workers.tasks.backtests"],
)
celery_app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_time_limit=HARD_TIME_LIMIT_S,
    task_soft_time_limit=SOFT_TIME_LIMIT_S,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
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
