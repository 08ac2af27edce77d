"""A renter's view of one subscription's results, under the subscriptions path it belongs to."""

from __future__ import annotations

from fastapi import APIRouter

from app.core.errors import error_responses
from app.deps import RenterReadDep, RuntimeDep
from app.performance.schemas import PerformanceOut
from app.performance.service import performance
from app.subscriptions import service

router = APIRouter(
    prefix="/api/v1/subscriptions", tags=["subscriptions"], responses=error_responses(403)
)


@router.get("/{sub_id}/performance", response_model=PerformanceOut, responses=error_responses(404))
async def get_performance(sub_id: str, read: RenterReadDep, runtime: RuntimeDep) -> PerformanceOut:
    async with read.sessions() as session:
        sub = await service.get_owned(session, read, sub_id)
        return await performance(session, sub, runtime.settings)
