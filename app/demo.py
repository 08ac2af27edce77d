"""First-start seeding for the embedded default: keys, a demo bot and a paper subscription."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.authenticator import Caller
from app.api_keys.schemas import Scope
from app.api_keys.service import create_api_key
from app.bots.schemas import BotCreate, RegistrationCreate
from app.bots.service import create_bot, register_bot
from app.bots.strategy import Ensemble, Strategy
from app.core.principals import encode_principal
from app.core.settings import Settings
from app.models import ApiKey, Position, Subscription
from app.subscriptions.rules import reference_capital
from app.subscriptions.schemas import Mode, SubscriptionCreate
from app.subscriptions.service import create as create_subscription
from app.users.renter import Renter
from app.users.repository import get_or_create_renter

DEMO_PRINCIPAL = encode_principal(b"botmarket-demo")


@dataclass(frozen=True)
class DemoSeed:
    admin_key: str
    marketplace_key: str
    principal: str
    bot_id: str
    subscription_id: str
    holds_btc: bool


DEMO_HOLDING = Decimal("0.005")  # BTC


async def seed_demo(
    session: AsyncSession,
    settings: Settings,
    btc_price: Decimal | None,
) -> DemoSeed | None:
    """Seed once, on a database without any API key; None when there is something already.

    With a price, the demo wallet starts holding DEMO_HOLDING BTC bought at it: one-minute
    scores stay on one side for minutes at a time, and a wallet of only USDT would wait out
    every SELL, while one that holds some trades on either side.
    """
    if await session.scalar(select(func.count()).select_from(ApiKey)):
        return None
    admin = await create_api_key(session, "demo admin", Scope.admin)
    # The demo's own database: its one marketplace is made here whatever the environment.
    marketplace = await create_api_key(
        session, "demo marketplace", Scope.marketplace, create_marketplace=True
    )
    assert marketplace.marketplace is not None
    caller = Caller(admin.row.id, Scope.admin, admin.row.owner_user_id, admin.row.prefix)
    # A low threshold so that the demo acts on most one-minute candles.
    strategy = Strategy(ensemble=Ensemble(threshold=Decimal("0.02")))
    bot, _ = await create_bot(
        session,
        caller,
        BotCreate(name="Demo BTC 1m", description="seeded by botmarket run", strategy=strategy),
        settings,
    )
    # Listed, as every bot a renter subscribes to must be.
    await register_bot(
        session, caller, bot.id, RegistrationCreate(price=Decimal(0)), create_marketplace=True
    )
    home = marketplace.marketplace.id
    renter = await get_or_create_renter(session, home, DEMO_PRINCIPAL)
    sub = await create_subscription(
        session,
        Renter(renter.id, home, DEMO_PRINCIPAL),
        SubscriptionCreate(
            bot_id=bot.id,
            symbol="BTCUSDT",
            timeframe="1m",
            mode=Mode.paper,
            quote_amount=Decimal(100),
        ),
        settings,
    )
    if btc_price is not None:
        await _hold_some_btc(session, sub, settings, btc_price)
    return DemoSeed(
        admin.plaintext,
        marketplace.plaintext,
        DEMO_PRINCIPAL,
        bot.id,
        sub.id,
        holds_btc=btc_price is not None,
    )


async def _hold_some_btc(
    session: AsyncSession, sub: Subscription, settings: Settings, btc_price: Decimal
) -> None:
    """The demo wallet's DEMO_HOLDING BTC, bought at `btc_price` out of its capital."""
    session.add(
        Position(
            subscription_id=sub.id,
            symbol=sub.symbol,
            quantity=DEMO_HOLDING,
            average_cost=btc_price,
            realized_pnl=Decimal(0),
            quote_balance=reference_capital(sub, settings) - DEMO_HOLDING * btc_price,
        )
    )
    await session.flush()
