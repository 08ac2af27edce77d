"""First-start seeding for the embedded default: keys, a demo bot and a paper subscription."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.authenticator import Caller, Scope
from app.api_keys.service import create_api_key
from app.bots.schemas import BotCreate
from app.bots.service import create_bot
from app.bots.strategy import Ensemble, Strategy
from app.core.principals import encode_principal
from app.models import ApiKey
from app.subscriptions.schemas import Mode, SubscriptionCreate
from app.subscriptions.service import create as create_subscription
from app.users.repository import get_or_create_renter

DEMO_PRINCIPAL = encode_principal(b"botmarket-demo")


@dataclass(frozen=True)
class DemoSeed:
    admin_key: str
    marketplace_key: str
    principal: str
    bot_id: str
    subscription_id: str


async def seed_demo(session: AsyncSession, llm_providers: list[str]) -> DemoSeed | None:
    """Seed once, on a database without any API key; None when there is something already."""
    if await session.scalar(select(func.count()).select_from(ApiKey)):
        return None
    admin = await create_api_key(session, "demo admin", Scope.admin)
    marketplace = await create_api_key(session, "demo marketplace", Scope.marketplace)
    caller = Caller(admin.row.id, Scope.admin, admin.row.owner_user_id)
    # A low threshold so that the demo acts on most one-minute candles.
    strategy = Strategy(ensemble=Ensemble(threshold=Decimal("0.02")))
    bot, _ = await create_bot(
        session,
        caller,
        BotCreate(name="Demo BTC 1m", description="seeded by botmarket run", strategy=strategy),
        llm_providers,
    )
    renter = await get_or_create_renter(session, DEMO_PRINCIPAL)
    sub = await create_subscription(
        session,
        renter,
        SubscriptionCreate(
            bot_id=bot.id,
            symbol="BTCUSDT",
            timeframe="1m",
            mode=Mode.paper,
            quote_amount=Decimal(100),
        ),
    )
    return DemoSeed(admin.plaintext, marketplace.plaintext, DEMO_PRINCIPAL, bot.id, sub.id)
