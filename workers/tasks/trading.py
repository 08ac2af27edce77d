"""Thin task wrappers: ids in, a service coroutine of app/ run on the process's loop."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.utils.time import get_exponential_backoff_interval

from app.integrations.binance.errors import TemporaryError
from app.trading.flows import DueGroup
from workers.celery_app import celery_app
from workers.runtime import runtime

# Only temporary exchange errors are worth another try; the flows make a retry harmless.
RETRYING: dict[str, Any] = {
    "autoretry_for": (TemporaryError,),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    # A few tries within a decision's freshness; what still fails is the reconciler's.
    "max_retries": 5,
}


def _now() -> datetime:
    return datetime.now(UTC)


@celery_app.task(name="trading.dispatch")
def dispatch() -> int:
    return len(runtime().run(runtime().flows.dispatch(_now())))


@celery_app.task(name="trading.decide", bind=True, **RETRYING)
def decide(self: Task, groups: list[dict[str, str]]) -> int:
    flows = runtime().flows
    decided = runtime().run(flows.decide([DueGroup.from_job(g) for g in groups]))
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
    trades = runtime().run(runtime().flows.execute(decision_id, subscription_ids))
    return sum(trade is not None for trade in trades)


@celery_app.task(name="trading.protect", **RETRYING)
def protect() -> int:
    return len(runtime().run(runtime().flows.protect(_now())))


@celery_app.task(name="subscriptions.expire", **RETRYING)
def expire() -> int:
    return len(runtime().run(runtime().flows.expire(_now())))


@celery_app.task(name="performance.snapshot", **RETRYING)
def snapshot() -> int:
    return runtime().run(runtime().flows.snapshot(_now()))


@celery_app.task(name="trading.reconcile")
def reconcile() -> int:
    # No retry of its own: beat sends the next sweep within seconds.
    outcome = runtime().run(runtime().flows.reconcile(_now()))
    return outcome.attempts_resolved + outcome.expiries_finished + outcome.orders_recovered
