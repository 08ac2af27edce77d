"""What beat sends, and how often."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from app.core.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "dispatch": {"task": "trading.dispatch", "schedule": settings.dispatch_interval_s},
        # A pass not started within its interval is dropped: the next one does its work.
        "protect": {
            "task": "trading.protect",
            "schedule": settings.protect_interval_s,
            "options": {"expires": settings.protect_interval_s},
        },
        "expire": {"task": "subscriptions.expire", "schedule": 60.0},
        "reconcile": {"task": "trading.reconcile", "schedule": settings.reconcile_interval_s},
        "snapshot": {"task": "performance.snapshot", "schedule": crontab(minute=0)},
        # Off the hour, away from the snapshot.
        "purge-idempotency": {"task": "idempotency.purge", "schedule": crontab(minute=30)},
        "purge-events": {"task": "events.purge", "schedule": crontab(minute=40)},
        "purge-prompts": {"task": "verification.purge_prompts", "schedule": crontab(minute=50)},
        "sequence-events": {
            "task": "events.sequence",
            "schedule": settings.event_sequence_interval_s,
        },
        "dispatch-webhooks": {
            "task": "webhooks.dispatch",
            "schedule": settings.webhook_dispatch_interval_s,
        },
        "retry-webhooks": {"task": "webhooks.retry", "schedule": settings.webhook_retry_interval_s},
        "resume-backtests": {
            "task": "backtests.resume",
            "schedule": settings.backtest_resume_interval_s,
        },
    }
