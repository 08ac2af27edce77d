"""HTTP endpoint of a bot's public track record."""

from __future__ import annotations

from fastapi import APIRouter

from app.core.errors import error_responses
from app.deps import CallerDep, ReadSessionsDep, RuntimeDep
from app.track_records import service
from app.track_records.schemas import TrackRecordOut

router = APIRouter(prefix="/api/v1", tags=["track records"])


@router.get(
    "/bots/{bot_id}/track-record", response_model=TrackRecordOut, responses=error_responses(404)
)
async def get_track_record(
    bot_id: str, _: CallerDep, sessions: ReadSessionsDep, runtime: RuntimeDep
) -> TrackRecordOut:
    """What the bot's renters achieved per execution mode, its decisions, its LLM spend and
    the latest backtest of each version by its developer or an admin. Public to every key.
    Renters' results appear only as counts of renters per band, in a mode with at least
    TRACK_RECORD_MIN_RENTERS renters with a fill: no renter's figure can be derived from them
    (docs/track-records.md); no renter's backtest is shown."""
    async with sessions() as session:
        return await service.track_record(session, bot_id, runtime.settings)
