"""A worker process learns of credentials deleted elsewhere before each task it runs."""

from __future__ import annotations

import asyncio

from app.core.crypto import Keyring
from app.core.db import session_scope
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
