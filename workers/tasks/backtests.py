"""Thin task wrappers for backtests: one run's chunks, and beat's sweep of stalled runs."""

from __future__ import annotations

from datetime import UTC, datetime

from app.integrations.binance.errors import TemporaryError
from workers.celery_app import celery_app
from workers.runtime import runtime

# A run works for flows.TASK_BUDGET_S and then sends its own continuation; these limits only
# catch a chunk that hangs (the sweep resumes the run once its lease is over).
SOFT_TIME_LIMIT_S = 240
HARD_TIME_LIMIT_S = 300


@celery_app.task(
    name="backtests.run",
    autoretry_for=(TemporaryError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
    soft_time_limit=SOFT_TIME_LIMIT_S,
    time_limit=HARD_TIME_LIMIT_S,
)
def run(backtest_id: str) -> None:
    runtime().run(runtime().backtests.run(backtest_id))


@celery_app.task(name="backtests.resume")
def resume() -> int:
    # No retry of its own: beat sends the next sweep within a minute.
    return len(runtime().run(runtime().backtests.resume_stalled(datetime.now(UTC))))
