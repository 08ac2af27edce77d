"""Background jobs sent by task name, and only once the request's transaction has committed.

A job sent before the commit could run before its data exists; one sent from a transaction
that then rolls back would act on nothing. So jobs wait in the session until after_commit and
are dropped on rollback. app/ never imports the workers: a name is all the broker needs.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
_PENDING = "botmarket.jobs"


class JobQueue:
    def __init__(self, broker_url: str) -> None:
        self._producer = Celery("botmarket-api", broker=broker_url)
        self._producer.conf.broker_connection_retry_on_startup = True

    def send_after_commit(self, session: AsyncSession, name: str, **kwargs: Any) -> None:
        sync = session.sync_session
        pending: list[tuple[str, dict[str, Any]]] | None = sync.info.get(_PENDING)
        if pending is None:
            pending = sync.info[_PENDING] = []
            event.listen(sync, "after_commit", self._send, once=True)
            event.listen(sync, "after_rollback", _drop, once=True)
        pending.append((name, kwargs))

    def _send(self, sync: Session) -> None:
        for name, kwargs in sync.info.pop(_PENDING, []):
            try:
                self._producer.send_task(name, kwargs=kwargs)
            except Exception:  # the schedule catches up; a request must not fail over it
                log.warning("could not send job", extra={"job": name}, exc_info=True)


def _drop(sync: Session) -> None:
    dropped = sync.info.pop(_PENDING, [])
    if dropped:
        log.info("jobs dropped with the rolled back transaction", extra={"jobs": len(dropped)})
