"""The Celery tasks, one module per domain, and the retry policy they share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.integrations.binance.errors import TemporaryError

# Only temporary exchange errors are worth another try; the flows make a retry harmless.
RETRYING: dict[str, Any] = {
    "autoretry_for": (TemporaryError,),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    # A few tries within a decision's freshness; what still fails is the reconciler's.
    "max_retries": 5,
}


def now() -> datetime:
    return datetime.now(UTC)
