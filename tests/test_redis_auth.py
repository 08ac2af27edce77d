"""Redis with a password (AUTH), and Redis over TLS (`rediss://`), everywhere Redis is used:
the API's rate limits, its evictions' pub/sub and its readiness probe, and Celery's broker
(the API's producer and a worker), each against a redis-server this test starts."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from redis.exceptions import ConnectionError as RedisConnectionError

from app.api_keys.schemas import Scope
from app.core.db import create_engine, create_sessionmaker, session_scope
from app.core.jobs import JobQueue
from app.core.migrations import migrate
from app.core.redis_clients import broker_tls, open_redis
from app.core.settings import Settings
from app.health import connect_to_broker
from app.main import create_app
from tests.conftest import make_key
from tests.helpers import running
from tests.sandbox_server import free_port
from tests.test_tls import self_signed_certificate

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="no redis-server on this host")


@dataclass
class RedisServer:
    scheme: str
    port: int
    password: str
    ca_file: str | None

    def url(self, db: int, password: str | None = None) -> str:
        return f"{self.scheme}://:{password or self.password}@{LOOPBACK}:{self.port}/{db}"

    def client_settings(self, *, trusted: bool = True) -> Settings:
        """Settings for a client of db 0; `trusted=False` leaves the server's CA out."""
        return Settings(redis_url=self.url(0), redis_ssl_ca_certs=self.ca_file if trusted else None)


def _command(directory: Path, tls: bool) -> tuple[list[str], RedisServer]:
    assert REDIS_SERVER is not None
    port, password = free_port(), secrets.token_urlsafe(24)
    command = [REDIS_SERVER, "--bind", LOOPBACK, "--requirepass", password]
    command += ["--save", "", "--appendonly", "no", "--dir", str(directory)]
    ca_file = None
    if tls:
        cert, key = self_signed_certificate(directory)
        ca_file = str(cert)
        command += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert)]
        command += ["--tls-key-file", str(key), "--tls-ca-cert-file", ca_file]
        command += ["--tls-auth-clients", "no"]
    else:
        command += ["--port", str(port)]
    return command, RedisServer("rediss" if tls else "redis", port, password, ca_file)


@pytest.fixture(scope="module", params=["redis", "rediss"])
def redis_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """A redis-server of this test's own, with a generated password; over TLS for rediss."""
    command, server = _command(tmp_path_factory.mktemp("redis"), tls=request.param == "rediss")
    settings = server.client_settings()
    ready = lambda: asyncio.run(_pings(settings))  # noqa: E731
    with running(command, ready, "redis-server", stdout=subprocess.DEVNULL):
        yield server


async def _pings(settings: Settings) -> bool:
    redis = open_redis(settings)
    assert redis is not None
    try:
        return bool(await redis.ping())
    except RedisConnectionError:
        return False
    finally:
        await redis.aclose()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'botmarket.db'}"
    migrate(url)
    return url


def settings_for(server: RedisServer, database_url: str, password: str | None = None) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=server.url(0, password),
        celery_broker_url=server.url(1, password),
        redis_ssl_ca_certs=server.ca_file,
        fernet_keys=f"test:{Fernet.generate_key().decode()}",
    )


@pytest.fixture
async def api(redis_server: RedisServer, database_url: str) -> AsyncIterator[tuple[object, str]]:
    """The API on Redis with its password: (app, an admin key)."""
    settings = settings_for(redis_server, database_url)
    admin = await make_key(settings, Scope.admin, "admin")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application, admin


async def test_rate_limits_evictions_and_readiness_use_redis_with_its_password(
    api: tuple[object, str], redis_server: RedisServer
) -> None:
    application, admin = api
    transport = httpx.ASGITransport(app=application)  # type: ignore[arg-type]
    probe = open_redis(
        Settings(redis_url=redis_server.url(0), redis_ssl_ca_certs=redis_server.ca_file)
    )
    assert probe is not None
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        probe.pubsub() as listener,
    ):
        channel = application.state.runtime.authenticator.changes.channel
        await listener.subscribe(channel)
        assert (await client.get("/health/ready")).json() == {"status": "ok"}
        created = await client.post(
            "/api/v1/api-keys",
            json={"name": "to revoke", "scope": "developer"},
            headers={"X-API-Key": admin},
        )
        assert created.status_code == 201
        # The request went through the rate limiter, whose buckets live in this Redis.
        assert await probe.keys("botmarket:ratelimit:*")
        revoked = await client.delete(
            f"/api/v1/api-keys/{created.json()['id']}", headers={"X-API-Key": admin}
        )
        assert revoked.status_code == 204
        published = None
        deadline = time.monotonic() + 5
        while published is None and time.monotonic() < deadline:
            published = await listener.get_message(ignore_subscribe_messages=True, timeout=0.5)
        assert published is not None and published["channel"] == channel.encode()
    await probe.aclose()


async def test_a_wrong_password_makes_the_api_not_ready(
    redis_server: RedisServer, database_url: str
) -> None:
    application = create_app(settings_for(redis_server, database_url, password="wrong"))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ready = await client.get("/health/ready")
    assert ready.status_code == 503
    failed = {detail["loc"] for detail in ready.json()["error"]["details"]}
    assert failed == {"redis", "broker"}


# A worker of its own process: in this one, the project's worker signal receivers (metrics
# listener, redelivery check) would act on it too.
ECHO_WORKER = """
import sys
from pathlib import Path
from celery import Celery
from app.core.redis_clients import tls_options

url, ca_file, name, out = sys.argv[1:]
app = Celery("round-trip", broker=url)
app.conf.broker_use_ssl = tls_options(url, ca_file or None) or None

@app.task(name=name)
def echo(**kwargs):
    Path(out).write_text(repr(sorted(kwargs.items())))

app.worker_main(["worker", "--pool=solo", "--loglevel=WARNING", "--without-mingle",
                 "--without-gossip", "--without-heartbeat"])
"""


async def test_a_job_goes_from_the_api_through_the_broker_to_a_worker(
    redis_server: RedisServer, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(redis_server, database_url)
    name, out = f"round_trip.echo.{redis_server.scheme}", tmp_path / "echoed"
    command = [sys.executable, "-c", ECHO_WORKER, settings.broker_url]
    command += [redis_server.ca_file or "", name, str(out)]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    jobs = JobQueue(settings.broker_url, broker_tls(settings))
    engine = create_engine(settings.database_url, pool=False)
    with running(command, lambda: True, "the worker", cwd=tmp_path, env=env):
        async with session_scope(create_sessionmaker(engine)) as session:
            jobs.send_after_commit(session, name, greeting="hello")
        await jobs.drain()
        deadline = time.monotonic() + 30
        while not out.exists():
            assert time.monotonic() < deadline, "the job did not reach the worker"
            await asyncio.sleep(0.1)
    jobs.close()
    await engine.dispose()
    assert out.read_text() == "[('greeting', 'hello')]"


def test_rediss_checks_the_servers_certificate(redis_server: RedisServer) -> None:
    if redis_server.scheme != "rediss":
        pytest.skip("TLS only")
    trusting = redis_server.client_settings()
    untrusting = redis_server.client_settings(trusted=False)
    assert asyncio.run(_pings(trusting))
    # Signed by a CA the system does not trust: refused, by redis-py and by kombu alike
    # (kombu's own default for rediss:// would not have checked).
    assert not asyncio.run(_pings(untrusting))
    connect_to_broker(trusting.broker_url, broker_tls(trusting))
    with pytest.raises(Exception, match="certificate verify failed"):
        connect_to_broker(untrusting.broker_url, broker_tls(untrusting))


def test_compose_runs_redis_with_a_password_that_every_app_service_sends() -> None:
    from tests.test_deployment import APP_SERVICES, SERVICES, substituted

    redis = SERVICES["redis"]
    assert "requirepass" in redis["command"][-1] and "$$REDIS_PASSWORD" in redis["command"][-1]
    # Healthchecks and `redis-cli` in the container authenticate from the environment.
    assert redis["environment"]["REDISCLI_AUTH"] == redis["environment"]["REDIS_PASSWORD"]
    for name in APP_SERVICES:
        env = {k: substituted(str(v)) for k, v in SERVICES[name]["environment"].items()}
        for variable in ("REDIS_URL", "CELERY_BROKER_URL"):
            assert env[variable].startswith("redis://:stand-in-redis_password@redis:6379/")
