"""The live stream across real API processes (`botmarket serve`) on MariaDB and Redis: an event
committed by one process, or by a worker, rings every other process's hub through Redis; a
client of an API process killed with SIGKILL resumes from its last cursor on the restarted one
with every event it missed, each once; and an idle socket is pinged.

The hubs' safety read of the table is set to ten minutes here, so an event that arrives came
by the doorbell.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket as stdlib_socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from app.api_keys.schemas import Scope
from app.core.db import create_engine, create_sessionmaker
from app.core.migrations import migrate
from app.core.settings import Settings
from app.events.doorbell import Doorbell
from tests.api.test_contract import listed_bot, subscribe
from tests.conftest import REDIS_URL, fresh_mariadb_database, make_key, require_service
from tests.events.seeding import write_renter_events
from tests.events.stream_client import events, ids, socket, ticket
from tests.helpers import ROOT, api_processes, new_principal, running
from tests.sandbox_server import free_port


@dataclass(frozen=True)
class Deployment:
    settings: Settings
    env: dict[str, str]
    directory: Path


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_service("Redis", "127.0.0.1", 6379)
    directory = tmp_path_factory.mktemp("stream")
    with fresh_mariadb_database() as database_url:
        migrate(database_url)
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "FERNET_KEYS": f"stream:{Fernet.generate_key().decode()}",
            "CELERY_BROKER_URL": f"sqla+sqlite:///{directory / 'broker.sqlite'}",
            "STREAM_SAFETY_POLL_S": "600",
            "STREAM_HEARTBEAT_S": "0.5",
        }
        settings = Settings(database_url=database_url, redis_url=REDIS_URL)
        yield Deployment(settings, env, directory)


@pytest.fixture
async def worker_sessions(
    deployment: Deployment,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions as a worker's: their commits ring every API process through Redis."""
    engine = create_engine(deployment.settings.database_url, pool=False)
    sessionmaker = create_sessionmaker(engine)
    doorbell = Doorbell(deployment.settings)
    doorbell.serve(sessionmaker)
    yield sessionmaker
    doorbell.close()
    await engine.dispose()


@pytest.fixture(scope="module")
def replicas(deployment: Deployment) -> Iterator[list[str]]:
    """Two API processes of the deployment: their base URLs."""
    with api_processes(deployment.env, deployment.directory, 2) as urls:
        yield urls


async def test_a_commit_in_one_process_reaches_a_socket_on_another(
    deployment: Deployment,
    replicas: list[str],
    worker_sessions: async_sessionmaker[AsyncSession],
) -> None:
    admin = await make_key(deployment.settings, Scope.admin, "admin")
    developer = await make_key(deployment.settings, Scope.developer, "developer")
    marketplace = await make_key(deployment.settings, Scope.marketplace, "marketplace")
    first, second = replicas
    async with (
        httpx.AsyncClient(base_url=first) as api,
        socket(second.removeprefix("http://"), "/api/v1/events/ws", admin) as ws,
    ):
        bot = await listed_bot(api, developer, name="streamed")
        principal = new_principal()
        created = await subscribe(api, marketplace, principal, bot["id"])
        assert created.status_code == 201, created.text
        (by_request,) = await events(ws, 1)
        assert by_request["event"]["type"] == "subscription.created"
        assert by_request["event"]["subscription_id"] == created.json()["id"]

        by_worker = await write_renter_events(worker_sessions, principal, 2)
        assert ids(await events(ws, 2)) == by_worker


@contextlib.contextmanager
def api_process(deployment: Deployment, port: int) -> Iterator[subprocess.Popen[bytes]]:
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    log = (deployment.directory / f"api-{port}.log").open("ab")
    with (
        log,
        running(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            ready,
            "the API",
            cwd=deployment.directory,
            env={**os.environ, "PYTHONPATH": str(ROOT), **deployment.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        yield process


async def test_a_client_resumes_on_a_restarted_process_after_sigkill(
    deployment: Deployment, worker_sessions: async_sessionmaker[AsyncSession]
) -> None:
    marketplace = await make_key(deployment.settings, Scope.marketplace, "marketplace")
    principal = new_principal()
    port = free_port()
    base = f"127.0.0.1:{port}"
    with api_process(deployment, port) as process:
        async with socket(base, (await ticket(base, marketplace, principal))["url"]) as ws:
            seen = await events(ws, len(await write_renter_events(worker_sessions, principal, 3)))
            process.kill()
            process.wait()
    # Written while no API process runs: the client misses these.
    missed = await write_renter_events(worker_sessions, principal, 4)

    with api_process(deployment, port):
        async with socket(base, (await ticket(base, marketplace, principal))["url"]) as ws:
            await ws.send(json.dumps({"type": "resume", "after": seen[-1]["cursor"]}))
            later = await write_renter_events(worker_sessions, principal, 2)
            resumed = await events(ws, len(missed) + len(later))
            # And nothing else came before the next event written.
            (sentinel,) = await write_renter_events(worker_sessions, principal)
            (following,) = await events(ws, 1)
    assert ids(resumed) == missed + later
    assert following["event"]["id"] == sentinel


def first_ping(port: int, key: str) -> Frame:
    """Open a WebSocket at the protocol level (websockets' sans-I/O client over a plain
    socket), send nothing, and return the first control frame the server sends: the frames
    a high-level client answers without showing them."""
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/api/v1/events/ws"))
    request = protocol.connect()
    request.headers["X-API-Key"] = key
    protocol.send_request(request)
    # Far above STREAM_HEARTBEAT_S here, below uvicorn's own default interval (20 s): a ping
    # in time is the setting's.
    with stdlib_socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(protocol.data_to_send()))
        while True:
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Frame):
                    return event


async def test_an_idle_socket_is_pinged(deployment: Deployment, replicas: list[str]) -> None:
    admin = await make_key(deployment.settings, Scope.admin, "admin")
    frame = first_ping(int(replicas[0].rsplit(":", 1)[1]), admin)
    assert frame.opcode is Opcode.PING
