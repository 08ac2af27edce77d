"""A marketplace key's renters each have a budget of their own under the key's ceiling, and no
budget lets a second minute's worth through around a minute's boundary."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from app.core.db import create_engine
from app.core.errors import RateLimited
from app.core.ratelimit import InProcessRateLimiter, RateLimiter, RedisRateLimiter
from app.core.settings import Settings
from app.main import create_app
from app.models import ApiKey
from tests.api.test_contract import assert_error
from tests.conftest import REDIS_URL, require_service
from tests.helpers import headers, new_principal
from tests.test_cli_assertion_keys import botmarket


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings.model_copy(update={"rate_limit_per_minute": 3}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def _statuses(
    http: httpx.AsyncClient, key: str, principal: str | None, n: int, path: str = "subscriptions"
) -> list[int]:
    return [
        (await http.get(f"/api/v1/{path}", headers=headers(key, principal))).status_code
        for _ in range(n)
    ]


async def test_one_renters_burst_leaves_the_other_renters_of_the_key_their_budget(
    limited: httpx.AsyncClient, marketplace_key: str
) -> None:
    noisy, quiet = new_principal(), new_principal()
    assert await _statuses(limited, marketplace_key, noisy, 4) == [200, 200, 200, 429]
    refused = await limited.get("/api/v1/subscriptions", headers=headers(marketplace_key, noisy))
    assert_error(refused, 429, "RATE_LIMITED")
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 20  # one request of 3 a minute refills in 20 s
    assert refused.headers["ratelimit-policy"] == '"renter";q=3;w=60, "key";q=60000;w=60'
    assert refused.headers["ratelimit"] == f'"renter";r=0;t={retry_after}'
    assert await _statuses(limited, marketplace_key, quiet, 3) == [200, 200, 200]


async def test_an_admin_sets_the_ceiling_of_all_a_keys_renters_together(
    limited: httpx.AsyncClient, admin_key: str
) -> None:
    created = await limited.post(
        "/api/v1/api-keys",
        json={"name": "small-marketplace", "scope": "marketplace", "rate_limit_per_minute": 4},
        headers=headers(admin_key, idempotency_key=uuid.uuid4().hex),
    )
    assert created.status_code == 201, created.text
    assert created.json()["rate_limit_per_minute"] == 4
    key = created.json()["key"]
    assert await _statuses(limited, key, new_principal(), 2) == [200, 200]
    assert await _statuses(limited, key, new_principal(), 3) == [200, 200, 429]
    refused = await limited.get("/api/v1/subscriptions", headers=headers(key, new_principal()))
    assert_error(refused, 429, "RATE_LIMITED")
    assert refused.headers["ratelimit"].startswith('"key";r=0;t=')
    assert refused.headers["ratelimit-policy"] == '"renter";q=3;w=60, "key";q=4;w=60'


async def test_a_developer_key_has_one_budget_named_key(
    limited: httpx.AsyncClient, developer_key: str
) -> None:
    assert await _statuses(limited, developer_key, None, 4, "bots") == [200, 200, 200, 429]
    refused = await limited.get("/api/v1/bots", headers=headers(developer_key))
    assert refused.headers["ratelimit-policy"] == '"key";q=3;w=60'


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["in-process", "redis"])
async def limiter_on(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[[int, _Clock], RateLimiter]]:
    if request.param == "in-process":
        yield lambda limit, clock: InProcessRateLimiter(limit, clock)
        return
    require_service("Redis", "127.0.0.1", 6379)
    async with Redis.from_url(REDIS_URL) as redis:
        yield lambda limit, clock: RedisRateLimiter(redis, limit, clock)


async def _admitted(
    limiter: RateLimiter, key_id: str, limit: int, renter: str | None, n: int
) -> int:
    admitted = 0
    for _ in range(n):
        try:
            await limiter.hit(key_id, limit, renter)
            admitted += 1
        except RateLimited:
            pass
    return admitted


@pytest.mark.parametrize("renter", [None, "renter-a"])
async def test_a_minutes_boundary_lets_no_second_minute_through(
    limiter_on: Callable[[int, _Clock], RateLimiter], renter: str | None
) -> None:
    limit = 100
    clock = _Clock(1_800_000_000 + 59.9)  # 0.1 s before a minute ends
    limiter = limiter_on(limit, clock)
    key_id = uuid.uuid4().hex
    assert await _admitted(limiter, key_id, limit, renter, 2 * limit) == limit
    clock.now += 0.2  # 0.1 s into the next minute
    assert await _admitted(limiter, key_id, limit, renter, 2 * limit) == 0
    clock.now += 6.0  # a tenth of the minute refills a tenth of the budget
    assert await _admitted(limiter, key_id, limit, renter, 2 * limit) == limit // 10
    clock.now += 60.0
    assert await _admitted(limiter, key_id, limit, renter, 2 * limit) == limit


async def test_a_renters_refusal_says_when_its_next_request_is_due(
    limiter_on: Callable[[int, _Clock], RateLimiter],
) -> None:
    clock = _Clock(1_800_000_000.0)
    limiter = limiter_on(6, clock)  # one request every 10 s
    key_id = uuid.uuid4().hex
    assert await _admitted(limiter, key_id, 1000, "renter-a", 6) == 6
    clock.now += 2.5
    with pytest.raises(RateLimited) as refused:
        await limiter.hit(key_id, 1000, "renter-a")
    assert refused.value.headers == {
        "Retry-After": "8",
        "RateLimit-Policy": '"renter";q=6;w=60, "key";q=1000;w=60',
        "RateLimit": '"renter";r=0;t=8',
    }
    await limiter.hit(key_id, 1000, "renter-b")  # another renter of the key has its own


def test_the_cli_sets_a_keys_ceiling(database_url: str) -> None:
    args = ("api-keys", "create", "--name", "canister", "--scope", "marketplace")
    assert botmarket(database_url, *args, "--rate-limit", "0").returncode != 0
    done = botmarket(database_url, *args, "--rate-limit", "120000")
    assert done.returncode == 0, done.stderr
    prefix = done.stdout.strip().splitlines()[-1].split("_")[1]

    async def ceiling() -> int | None:
        engine = create_engine(database_url, pool=False)
        async with engine.connect() as connection:
            query = select(ApiKey.rate_limit_per_minute).where(ApiKey.prefix == prefix)
            limit = (await connection.execute(query)).scalar_one()
        await engine.dispose()
        return limit

    assert asyncio.run(ceiling()) == 120_000
