"""Thin task wrappers: ids in, a service coroutine of app/ run on the process's loop."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.integrations.binance.errors import TemporaryError
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


@celery_app.task(name="trading.decide", **RETRYING)
def decide(bot_version_id: str, symbol: str, timeframe: str, as_of: str) -> str:
    flows = runtime().flows
    decision = runtime().run(
        flows.decide(bot_version_id, symbol, timeframe, datetime.fromisoformat(as_of))
    )
    return decision.id


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
