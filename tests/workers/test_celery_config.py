"""Redis hands an unacknowledged task to another worker after the visibility timeout: it must
outlast every task's hard time limit, a task's own limit included, or a running task runs
twice at once."""

from __future__ import annotations

import pytest
from celery import Celery

from app.core.settings import get_settings
from workers.celery_app import celery_app, longest_hard_time_limit, refuse_early_redelivery


def test_a_task_whose_own_limit_outlasts_the_visibility_timeout_is_refused() -> None:
    app = Celery(set_as_current=False)
    app.conf.task_time_limit = 100

    @app.task(name="short")
    def short() -> None: ...

    @app.task(name="long", time_limit=500)
    def long() -> None: ...

    assert longest_hard_time_limit(app) == ("long", 500)
    with pytest.raises(SystemExit, match=r"must exceed the hard time limit of task long \(500 s\)"):
        refuse_early_redelivery(app, 400)
    refuse_early_redelivery(app, 501)


def test_every_task_of_the_worker_ends_before_redis_redelivers_it() -> None:
    celery_app.loader.import_default_modules()  # what a worker does before it starts
    _, limit = longest_hard_time_limit(celery_app)
    assert limit < get_settings().celery_visibility_timeout_s
