"""Subscription rules: creation with the credentials its mode needs, the renter's reads,
and the status transitions a renter may make."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.backtests.service import rentable_bot
from app.bots import repository as bots
from app.core.errors import CredentialsRequired, InvalidStateTransition, NotFound, Unprocessable
from app.core.reads import RowReader
from app.core.settings import Settings
from app.credentials import repository as credentials
from app.events.types import EventType
from app.models import Subscription
from app.subscriptions import repository
from app.subscriptions.events import status_changed
from app.subscriptions.schemas import Mode, Status, SubscriptionCreate, SubscriptionUpdate
from app.users.renter import Renter, RenterRef

# The renter's moves; `expiring` and `expired` are set only by the system when ends_at passes.
_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.active: frozenset({Status.active, Status.paused, Status.cancelled}),
    Status.paused: frozenset({Status.paused, Status.active, Status.cancelled}),
    Status.cancelled: frozenset({Status.cancelled}),
    Status.expiring: frozenset({Status.expiring}),
    Status.expired: frozenset({Status.expired}),
}


async def _credential_for(session: AsyncSession, user_id: str, mode: Mode) -> str:
    """The id of the renter's credentials that `mode` trades with (re-linked on reactivation)."""
    testnet = mode is Mode.testnet
    credential = await credentials.find(session, user_id, "binance", testnet)
    if credential is None:
        raise CredentialsRequired(
            f"mode {mode.value!r} needs stored binance credentials with "
            f"testnet={str(testnet).lower()}: PUT /api/v1/credentials/binance first",
            details=[{"loc": "body.mode", "message": "no matching credentials stored"}],
        )
    return credential.id


async def create(
    session: AsyncSession, renter: Renter, body: SubscriptionCreate, settings: Settings
) -> Subscription:
    if body.quote_amount > settings.max_quote_amount:
        raise Unprocessable(
            f"quote_amount is above the service's cap of {settings.max_quote_amount}",
            details=[{"loc": "body.quote_amount", "message": "above the service's cap"}],
        )
    bot = await rentable_bot(session, body.bot_id, renter.marketplace_id)
    version = await bots.current_version(session, bot)
    credential_id = None
    if body.mode is not Mode.paper:
        credential_id = await _credential_for(session, renter.id, body.mode)
    sub = Subscription(
        user_id=renter.id,
        bot_id=bot.id,
        bot_version_id=version.id,
        credential_id=credential_id,
        symbol=body.symbol,
        timeframe=body.timeframe,
        mode=body.mode.value,
        quote_amount=body.quote_amount,
        risk=body.risk.model_dump(mode="json", exclude_none=True),
        status=Status.active.value,
        ends_at=body.ends_at,
    )
    session.add(sub)
    await session.flush()
    await status_changed(session, sub, EventType.subscription_created)
    return sub


async def get_owned(session: AsyncSession, owner: RenterRef, sub_id: str) -> Subscription:
    sub = await repository.get_owned(session, owner, sub_id)
    if sub is None:
        raise NotFound("subscription")
    return sub


async def owned_view(reader: RowReader, owner: RenterRef, sub_id: str) -> dict[str, Any]:
    """The renter's subscription as SubscriptionOut's fields (app/core/reads.py's rows)."""
    shown = await repository.owned_view(reader, owner, sub_id)
    if shown is None:
        raise NotFound("subscription")
    return shown


async def update(
    session: AsyncSession, renter: Renter, sub_id: str, body: SubscriptionUpdate
) -> Subscription:
    sub = await get_owned(session, renter, sub_id)
    current = Status(sub.status)
    if body.status is not None and body.status != current:
        if body.status not in _TRANSITIONS[current]:
            raise InvalidStateTransition(
                f"a {current.value} subscription cannot become {body.status.value}"
            )
        ends_at = body.ends_at or sub.ends_at
        if body.status is Status.active and ends_at and ends_at <= datetime.now(UTC):
            raise InvalidStateTransition("the subscription has ended; set a later ends_at")
        if body.status is Status.active and sub.mode != Mode.paper:
            sub.credential_id = await _credential_for(session, renter.id, Mode(sub.mode))
        sub.status = body.status.value
        sub.status_reason = None
        await status_changed(session, sub)
    elif current in (Status.cancelled, Status.expiring, Status.expired) and (
        body.risk or body.ends_at
    ):
        raise InvalidStateTransition(f"a {current.value} subscription cannot be changed")
    if body.risk is not None:
        sub.risk = {**sub.risk, **body.risk.model_dump(mode="json", exclude_none=True)}
    if body.ends_at is not None:
        sub.ends_at = body.ends_at
    await session.flush()
    return sub
