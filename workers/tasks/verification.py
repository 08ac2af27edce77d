"""Thin task wrapper for the decision chains: the hourly purge of prompts past retention."""

from __future__ import annotations

from datetime import timedelta

from app.core.settings import get_settings
from app.verification.service import purge_prompts
from workers.celery_app import celery_app
from workers.runtime import runtime
from workers.tasks import now


@celery_app.task(name="verification.purge_prompts")
def purge() -> int:
    # No retry of its own: what one run leaves, the next hour's run deletes.
    retention = timedelta(days=get_settings().prompt_retention_days)
    return runtime().run(purge_prompts(runtime().sessionmaker, now(), retention))
