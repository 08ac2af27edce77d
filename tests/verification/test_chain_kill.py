"""A worker SIGKILLed in the middle of appending a decision to its bot's chain, while other
worker processes decide the same bot's other candles: the chain keeps no gap and no fork, and
`botmarket verify` checks all of it.

Real Celery workers on MariaDB and Redis run the real decide path (the sandbox's candles, the
fake LLMs). The kill point is made certain with a real lock: the test holds the bot's chain
head FOR UPDATE, so the doomed worker's append waits inside its transaction (bot row locked,
decision and votes written, head being read) until the test sees that wait and kills it; the
other workers' decisions queue behind it on the bot's lock.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from app.api_keys.schemas import Scope
from app.core.signing import generate_seed
from app.models import ChainLink, Decision
from app.trading.flows import DueGroup
from app.verification import repository
from app.verification.verifier import verify
from tests.conftest import make_key
from tests.fakes import RunningFakes
from tests.helpers import headers
from tests.sandbox_server import SandboxServer
from tests.trading.test_decide import bot_version
from tests.verification.independent import check_chain, check_head
from tests.verification.test_chain import served, whole_chain
from tests.workers.test_celery_e2e import Stack, api, redis_mariadb_stack, wait_for

pytestmark = pytest.mark.slow

DOOMED = "doomed"  # the queue of the decide job under test
SURVIVOR_JOBS, GROUPS_PER_JOB = 2, 3  # decided at once by two pool processes
LEASE_S = 32  # the least DECISION_LEASE_S allows with LLM_TIMEOUT_S=1


@pytest.fixture
def chain_stack(sandbox: SandboxServer, llm_fakes: RunningFakes, tmp_path: Path) -> Iterator[Stack]:
    with redis_mariadb_stack(
        sandbox,
        llm_fakes,
        tmp_path,
        **{key.upper(): value for key, value in llm_fakes.settings_overrides().items()},
        SIGNING_KEYS=f"chain:{generate_seed()}",
        LLM_TIMEOUT_S="1",
        DECISION_LEASE_S=str(LEASE_S),
        # The killed decision's job, sent again, waits out its dead owner's lease in one go.
        DECISION_WAIT_S=str(LEASE_S + 10),
        CELERY_VISIBILITY_TIMEOUT_S="600",  # no redelivery: the test sends the job again
    ) as stack:
        yield stack


async def lock_waits(application: FastAPI, table: str) -> int:
    """Transactions waiting for a row lock of `table`, FOR UPDATE."""
    async with application.state.runtime.sessionmaker() as session:
        waiting = await session.scalar(
            text(
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                "WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE :query"
            ),
            {"query": f"SELECT%FROM {table}%FOR UPDATE%"},
        )
    return int(waiting or 0)


async def stored(application: FastAPI, model: type) -> int:
    async with application.state.runtime.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.timeout(300)
async def test_a_worker_killed_mid_append_leaves_no_gap_and_no_fork(
    chain_stack: Stack, sandbox: SandboxServer
) -> None:
    stack = chain_stack
    base = datetime.now(UTC).replace(second=0, microsecond=0)
    total = 2 + SURVIVOR_JOBS * GROUPS_PER_JOB
    async with api(stack) as (application, http):
        version = await bot_version(application)
        # One 1m candle each, the latest first: as of base, base - 1 min, ...
        groups = [
            DueGroup(version.id, "BTCUSDT", "1m", base - timedelta(minutes=k)) for k in range(total)
        ]
        first, doomed_group, rest = groups[0], groups[1], groups[2:]

        async def decided(count: int) -> bool:
            return await stored(application, Decision) == count

        with stack.worker("survivor", concurrency=2):
            stack.send("trading.decide", groups=[first.job()])
            await wait_for(lambda: decided(1), within=60)
            sessionmaker = application.state.runtime.sessionmaker
            async with sessionmaker() as holder:
                assert await repository.locked_head(holder, version.bot_id) is not None
                with stack.worker("doomed", concurrency=1, queues=DOOMED) as doomed:
                    stack.send("trading.decide", queue=DOOMED, groups=[doomed_group.job()])
                    await wait_for(lambda: _waiting(application, "chain_heads", 1), within=60)
                    for start in range(0, len(rest), GROUPS_PER_JOB):
                        chunk = rest[start : start + GROUPS_PER_JOB]
                        stack.send("trading.decide", groups=[g.job() for g in chunk])
                    # Every other decision of the bot waits for the lock the doomed one holds.
                    await wait_for(lambda: _waiting(application, "bots", len(rest)), within=60)
                    os.killpg(doomed.pid, signal.SIGKILL)
                    doomed.wait(timeout=10)
                await holder.commit()
            await wait_for(lambda: decided(total - 1), within=60)
            # Killed before its commit: nothing of it was stored, and nothing waits on it.
            assert await stored(application, ChainLink) == total - 1
            # Sent again (as the next dispatch would): its dead owner's claim is taken over
            # once its lease runs out, and the decision is appended after the others.
            stack.send("trading.decide", groups=[doomed_group.job()])
            await wait_for(lambda: decided(total), within=LEASE_S + 60)

        developer = await make_key(stack.settings, Scope.developer)
        records = await whole_chain(http, developer, version.bot_id)
        assert [r["seq"] for r in records] == list(range(1, total + 1))
        check_chain(records)
        candles = {r["candle_open_at"] for r in records}
        assert len(candles) == total  # one record per candle: none twice, none lost
        assert records[-1]["candle_open_at"] == _open_of(doomed_group)
        head = await served(http, developer, f"/api/v1/bots/{version.bot_id}/chain")
        assert (head["seq"], head["hash"]) == (total, records[-1]["hash"])
        check_head(head, (await served(http, developer, "/api/v1/signing-keys"))["keys"])
        transport = httpx.ASGITransport(app=application)
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://api", headers=headers(developer)
            ) as reader,
            httpx.AsyncClient(base_url=sandbox.url) as exchange,
        ):
            report = await verify(reader, exchange, version.bot_id)
    assert report.ok and report.checked == total, report.summary()


async def _waiting(application: FastAPI, table: str, count: int) -> bool:
    return await lock_waits(application, table) == count


def _open_of(group: DueGroup) -> str:
    """The open time of the candle a group decides (the last closed as of its instant)."""
    return (group.as_of - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
