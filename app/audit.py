"""The audit trail: one row per write through the API and per order attempt. Never a secret."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logging import request_id_var
from app.models import AuditLog

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ACTION_LENGTH = 64  # AuditLog.action


def record(
    session: AsyncSession,
    request: Request,
    action: str,
    resource_type: str,
    resource_id: str | None,
    outcome: str = "success",
) -> None:
    caller = getattr(request.state, "caller", None)
    session.add(
        AuditLog(
            actor_api_key_id=caller.api_key_id if caller else None,
            principal=getattr(request.state, "principal", None),
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            request_id=request_id_var.get(),
            outcome=outcome,
        )
    )


class AuditRejectedWritesMiddleware:
    """Records refused writes (4xx) of authenticated callers in a transaction of their own.

    Successful writes are recorded by their routes inside the request's transaction; a
    refused one rolls that transaction back, so its trace has to be written separately. It
    sits inside the idempotency layer: a replayed refusal is not a second attempt.
    """

    def __init__(self, app: ASGIApp, sessionmaker: Callable[[], async_sessionmaker[AsyncSession]]):
        self.app = app
        self.sessionmaker = sessionmaker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        status = 0

        async def capture_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, capture_status)
        state = scope.get("state", {})
        caller = state.get("caller")
        if caller is None or not 400 <= status < 500:
            return
        route = getattr(scope.get("route"), "path", scope["path"])
        async with self.sessionmaker()() as session:
            session.add(
                AuditLog(
                    actor_api_key_id=caller.api_key_id,
                    principal=state.get("principal"),
                    # Cut to the column: on MariaDB a longer route template would turn
                    # the refusal into a 500 and lose its trace.
                    action=f"{scope['method']} {route}"[:_ACTION_LENGTH],
                    resource_type="request",
                    resource_id=None,
                    request_id=request_id_var.get(),
                    outcome=f"rejected_{status}",
                )
            )
            await session.commit()
