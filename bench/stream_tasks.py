"""Loaded into the bench's Celery worker (`celery worker -I stream_tasks`, with bench/ on the
path) by bench/stream.py: when each task starts and ends in its pool process (Celery's
task_prerun and task_postrun), pushed to a Redis list the bench reads after its run."""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

from celery.signals import task_postrun, task_prerun
from redis import Redis

KEY = "bench:stream:tasks"


@functools.cache
def _redis() -> Redis:
    # In the worker's pool process, at its first task: the bench imports this module too.
    return Redis.from_url(os.environ["REDIS_URL"])


def _note(phase: str, task: Any, kwargs: dict[str, Any] | None) -> None:
    subscription = (kwargs or {}).get("subscription_id")
    _redis().rpush(KEY, json.dumps([phase, task.name, subscription, time.time()]))


@task_prerun.connect
def _started(task: Any, kwargs: dict[str, Any] | None = None, **_: object) -> None:
    _note("start", task, kwargs)


@task_postrun.connect
def _ended(task: Any, kwargs: dict[str, Any] | None = None, **_: object) -> None:
    _note("end", task, kwargs)
