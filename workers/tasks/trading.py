"""Thin task wrappers of trading: ids in, a service coroutine of app/trading/flows.py run on
the process's loop."""

from __future__ import annotations

from celery import Task
from celery.utils.time import get_exponential_backoff_interval

from app.core.settings import get_settings
from app.trading import sweeps
from app.trading.flows import DueGroup
from workers.celery_app import celery_app
from workers.runtime import runtime
from workers.tasks import RETRYING, now


@celery_app.task(name="trading.dispatch")
def dispatch() -> int:
    return len(runtime().run(runtime().trading.dispatch(now())))


@celery_app.task(name="trading.decide", bind=True, **RETRYING)
def decide(self: Task, groups: list[dict[str, str]]) -> int:
    decided = runtime().run(runtime().trading.decide([DueGroup.from_job(g) for g in groups]))
    if decided.retry:
        # Only the groups that failed for a while go again, with RETRYING's backoff and tries:
        # the others are decided and their orders sent. (An error before any group was tried
        # is RETRYING's autoretry of the whole batch.)
        raise self.retry(
            kwargs={"groups": [g.job() for g in decided.retry]},
            exc=next(iter(decided.retry.values())),
            countdown=get_exponential_backoff_interval(
                factor=1,
                retries=self.request.retries,
                maximum=RETRYING["retry_backoff_max"],
                full_jitter=True,
            ),
        )
    return len(decided.decisions)


@celery_app.task(name="trading.execute", **RETRYING)
def execute(decision_id: str, subscription_ids: list[str]) -> int:
    trades = runtime().run(runtime().trading.execute(decision_id, subscription_ids))
    return sum(trade is not None for trade in trades)


@celery_app.task(name="trading.protect", **RETRYING)
def protect() -> int:
    return len(runtime().run(runtime().trading.protect(now())))


@celery_app.task(name="trading.exit", **RETRYING)
def exit_position(subscription_id: str) -> int:
    return int(runtime().run(runtime().trading.exit(subscription_id)) is not None)


@celery_app.task(name="trading.reconcile")
def reconcile() -> int:
    # No retry of its own: beat sends the next sweep within seconds.
    at = now()
    outcome = runtime().run(runtime().trading.reconcile(at))
    redis = runtime().redis
    if redis is not None:
        # For the admin's health page: the last sweep, and beat alive while sweeps come.
        runtime().loop.run_until_complete(
            sweeps.record(redis, get_settings().database_url, sweeps.Sweep(at, outcome))
        )
    return outcome.attempts_resolved + outcome.expiries_finished + outcome.orders_recovered
