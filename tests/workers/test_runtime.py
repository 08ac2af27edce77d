"""A worker process learns of credentials deleted elsewhere before each task it runs, and its
startup heap is out of the garbage collector's way while it works."""

from __future__ import annotations

import asyncio
import gc

from app.core.crypto import Keyring
from app.core.db import session_scope
from app.core.memory import GC_YOUNG_THRESHOLD
from app.core.settings import Settings
from app.credentials import service
from app.credentials.service import DecryptedCredential
from app.models import ExchangeCredential, User
from tests.helpers import new_principal
from tests.sandbox_server import SandboxServer
from workers.runtime import WorkerRuntime


def test_each_task_first_closes_the_clients_of_deleted_credentials(
    settings: Settings, sandbox: SandboxServer
) -> None:
    settings = settings.model_copy(
        update={"binance_api_url": sandbox.url, "worker_metrics_port": 0}
    )
    keyring = Keyring.parse(settings.fernet_keyring_text())
    api_key, api_secret = sandbox.new_account()
    runtime = WorkerRuntime.build(settings)

    async def store() -> DecryptedCredential:
        async with session_scope(runtime.sessionmaker) as session:
            user = User(principal=new_principal(), kind="renter")
            session.add(user)
            await session.flush()
            row, _ = await service.store(
                session, keyring, user.id, "binance", api_key, api_secret, testnet=False
            )
        async with runtime.sessionmaker() as session:
            return await service.decrypt_for_execution(session, keyring, row.id)

    async def delete(credential_id: str) -> None:
        async with session_scope(runtime.sessionmaker) as session:
            row = await session.get(ExchangeCredential, credential_id)
            await session.delete(row)

    try:
        credential = runtime.run(store())
        opened = runtime.run(runtime.clients.for_credential(credential))
        runtime.run(delete(credential.id))
        assert not opened._client.session.closed  # that task pruned before it deleted
        runtime.run(asyncio.sleep(0))
        assert opened._client.session.closed
    finally:
        runtime.close()
        asyncio.set_event_loop(None)


def test_the_startup_heap_is_frozen_while_working_and_released_at_shutdown(
    settings: Settings,
) -> None:
    # A full collection walking a worker's startup heap (~460,000 objects: the SDKs, the
    # models, Celery) stopped every order in flight on its event loop for 0.5-0.85 s: the
    # testnet orders' p99 in bench/tick.py. The tests build many runtimes in one process, so
    # each gives its heap back to the collector when it closes.
    thresholds = gc.get_threshold()
    runtime = WorkerRuntime.build(settings.model_copy(update={"worker_metrics_port": 0}))
    try:
        assert gc.get_freeze_count() > 100_000
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    finally:
        runtime.close()
        asyncio.set_event_loop(None)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds
