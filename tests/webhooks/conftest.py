"""A real HTTP receiver in a thread, the delivery flows on the app's database with a clock the
test moves, and bots' events seeded straight through the writer (renters' with
tests/events/seeding.py)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.crypto import Keyring
from app.core.db import create_engine, create_sessionmaker, session_scope, utcnow
from app.core.settings import Settings
from app.events import feed
from app.events.service import record
from app.events.types import EventType
from app.webhooks.flows import WebhookFlows
from tests.helpers import Clock, headers

URL = "/api/v1/webhooks"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """Records every POST and answers `status`; `hold` (when set) keeps each answer back
    until the test releases it."""

    url: str = ""
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    hold: threading.Event | None = None

    def ids(self, answered: int = 200) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests if r.answered == answered]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers["content-length"]))
        if receiver.hold is not None:
            receiver.hold.wait(30)
        status = receiver.status
        receiver.requests.append(
            Received({k.lower(): v for k, v in self.headers.items()}, body, status)
        )
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    receiver: Receiver


def _serve() -> Iterator[Receiver]:
    receiver = Receiver()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = receiver
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve()


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    yield from _serve()


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url, pool=False)
    yield create_sessionmaker(engine)
    await engine.dispose()


@dataclass
class Harness:
    """The delivery flows as a worker runs them, their jobs kept here until run."""

    flows: WebhookFlows
    clock: Clock
    jobs: list[dict[str, Any]]

    async def run_jobs(self) -> int:
        delivered = 0
        while self.jobs:
            delivered += await self.flows.deliver(self.jobs.pop(0)["delivery_ids"])
        return delivered

    async def dispatch(self) -> int:
        await self.flows.dispatch()
        return await self.run_jobs()

    async def retry_after(self, seconds: float) -> int:
        self.clock.advance(seconds)
        await self.flows.retry()
        return await self.run_jobs()


def webhook_settings(settings: Settings, **changes: object) -> Settings:
    """Short retries without jitter, so that a test moves its clock by whole steps."""
    return settings.model_copy(
        update={
            "webhook_retry_schedule_s": [1.0, 2.0, 4.0],
            "webhook_retry_jitter": 0.0,
            "webhook_timeout_s": 5.0,
            **changes,
        }
    )


def make_harness(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> Harness:
    jobs: list[dict[str, Any]] = []

    async def enqueue(name: str, kwargs: dict[str, Any]) -> None:
        assert name == "webhooks.deliver"
        jobs.append(kwargs)

    clock = Clock(utcnow())
    keyring = Keyring.parse(settings.fernet_keyring_text())
    return Harness(WebhookFlows(sessionmaker, keyring, settings, enqueue, clock), clock, jobs)


HarnessFor = Callable[[Settings], Harness]


@pytest.fixture
async def harness_for(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[HarnessFor]:
    """Makes harnesses under other settings; their clients are closed after the test."""
    made: list[Harness] = []

    def harness_for(settings: Settings) -> Harness:
        made.append(make_harness(settings, sessionmaker))
        return made[-1]

    yield harness_for
    for harness in made:
        await harness.flows.aclose()


@pytest.fixture
def harness(settings: Settings, harness_for: HarnessFor) -> Harness:
    return harness_for(webhook_settings(settings))


async def register(client: httpx.AsyncClient, key: str, url: str, **body: object) -> dict[str, Any]:
    response = await client.post(URL, json={"url": url, **body}, headers=headers(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def seed_bot_event(
    sessionmaker: async_sessionmaker[AsyncSession], bot_id: str, event_type: EventType
) -> str:
    async with session_scope(sessionmaker) as session:
        event = record(session, event_type, data={"action": "BUY"}, bot_id=bot_id)
    await feed.sequence(sessionmaker)
    return f"evt_{event.id}"
