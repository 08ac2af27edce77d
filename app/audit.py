"""The audit trail: one row per write through the API and per order attempt. Never a secret."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.logging import request_id_var
from app.models import AuditLog


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
