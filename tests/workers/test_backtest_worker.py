"""A backtest through real worker and beat processes on Redis and MariaDB: the API sends it,
a worker replays it chunk by chunk (its progress rising after each saved chunk) to its
result; a worker killed mid-run is recovered by beat's `backtests.resume` sweep once the lease
is over, and the resumed run ends with the same bytes as the uninterrupted one.

The whole process group is killed, so no pool parent requeues the task, and Redis would
redeliver it only after CELERY_VISIBILITY_TIMEOUT_S (600 s): the recovery is the sweep's.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.api_keys.schemas import Scope
from app.backtests.flows import CHUNK
from app.models import Backtest
from tests.backtests.conftest import make_bot, start
from tests.conftest import make_key, redis_db
from tests.fakes import RunningFakes
from tests.helpers import headers
from tests.sandbox_server import SandboxServer
from tests.workers.test_celery_e2e import Stack, api, redis_mariadb_stack, wait_for

pytestmark = pytest.mark.slow

LEASE_S, SWEEP_S = 3, 1
REDIS_DB = redis_db(2)  # not the other worker suites' database: this one may run beside them
# A year of 1h candles: 18 chunks, enough to watch the progress rise and to kill mid-run.
YEAR = {"start": "2025-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
CANDLES = 8760
POLL_S = 0.02  # well under a chunk's replay, so the watch sees the saves in between


@pytest.fixture
def backtest_stack(
    sandbox: SandboxServer, llm_fakes: RunningFakes, tmp_path: Path
) -> Iterator[Stack]:
    with redis_mariadb_stack(
        sandbox,
        llm_fakes,
        tmp_path,
        redis_db=REDIS_DB,
        BACKTEST_LEASE_S=str(LEASE_S),
        BACKTEST_RESUME_INTERVAL_S=str(SWEEP_S),
        RATE_LIMIT_PER_MINUTE="100000",  # the watch reads far more often than a client would
        CELERY_VISIBILITY_TIMEOUT_S="600",
    ) as stack:
        yield stack


class Watch:
    """Reads a backtest through the API and keeps every view it saw."""

    def __init__(self, http: httpx.AsyncClient, key: dict[str, str], backtest_id: str) -> None:
        self._http, self._key, self._url = http, key, f"/api/v1/backtests/{backtest_id}"
        self.views: list[dict[str, Any]] = []

    async def view(self) -> dict[str, Any]:
        response = await self._http.get(self._url, headers=self._key)
        assert response.status_code == 200, response.text
        self.views.append(response.json())
        return self.views[-1]

    async def until_succeeded(self, within: float, every: float = POLL_S) -> dict[str, Any]:
        async def ended() -> bool:
            status = (await self.view())["status"]
            assert status in ("queued", "running", "succeeded"), self.views[-1]
            return status == "succeeded"

        await wait_for(ended, within=within, every=every)
        return self.views[-1]

    async def until_a_chunk_is_saved(self) -> None:
        async def saved() -> bool:
            return (await self.view())["progress"]["candles_done"] > 0

        await wait_for(saved, every=POLL_S)

    def candles_done(self) -> list[int]:
        return [v["progress"]["candles_done"] for v in self.views]


async def row(application: FastAPI, backtest_id: str) -> Backtest:
    async with application.state.runtime.sessionmaker() as session:
        backtest = await session.get(Backtest, backtest_id)
    assert backtest is not None
    return backtest


def canonical(result: dict[str, Any] | None) -> str:
    return json.dumps(result, sort_keys=True)


@pytest.mark.timeout(300)
async def test_a_backtest_runs_in_chunks_on_a_worker_and_a_killed_run_resumes_to_the_same_result(
    backtest_stack: Stack,
) -> None:
    stack = backtest_stack
    async with api(stack) as (application, http):
        key = headers(await make_key(stack.settings, Scope.developer))
        bot = await make_bot(http, key["X-API-Key"])
        with stack.beat():
            # Uninterrupted: the progress rises one saved chunk at a time to the result.
            with stack.worker("whole", concurrency=1):
                created = await start(http, bot, key, llm="indicators", **YEAR)
                assert created.status_code == 202, created.text
                whole = Watch(http, key, created.json()["id"])
                done = await whole.until_succeeded(within=120)
            seen = whole.candles_done()
            assert seen == sorted(seen)
            assert all(n % CHUNK == 0 for n in seen if n != CANDLES), seen
            assert any(0 < n < CANDLES for n in seen), seen
            assert done["progress"] == {
                "candles_done": CANDLES,
                "candles_total": CANDLES,
                "percent": "100",
            }
            assert done["result"]["metrics"]["trades"] > 0

            # Killed after its first saved chunk: the sweep resends it once the lease is over.
            with stack.worker("doomed", concurrency=1) as doomed:
                created = await start(http, bot, key, llm="indicators", **YEAR)
                assert created.status_code == 202, created.text
                crashed = Watch(http, key, created.json()["id"])
                await crashed.until_a_chunk_is_saved()
                os.killpg(doomed.pid, signal.SIGKILL)
                doomed.wait(timeout=10)
            stalled = await row(application, crashed.views[-1]["id"])
            assert stalled.status == "running" and stalled.state is not None
            assert 0 < stalled.candles_done < CANDLES
            with stack.worker("rescuer", concurrency=1):
                resumed = await crashed.until_succeeded(within=LEASE_S + SWEEP_S + 60, every=0.3)
        assert (await row(application, resumed["id"])).fence == 2  # one takeover: the sweep's
    assert resumed["progress"] == done["progress"]
    assert canonical(resumed["result"]) == canonical(done["result"])
