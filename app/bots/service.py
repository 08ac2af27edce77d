"""Bot rules: creation, owner-only updates (a changed strategy is a new version), registration."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.authenticator import Caller
from app.api_keys.schemas import Scope
from app.bots import repository
from app.bots.schemas import BotCreate, BotOut, BotUpdate, RegistrationCreate
from app.bots.strategy import Strategy
from app.core.errors import Forbidden, NotFound, Unprocessable
from app.core.settings import Settings
from app.marketplaces import service as marketplaces
from app.models import Bot, BotMarketplaceRegistration, BotVersion


def to_out(bot: Bot, version: BotVersion) -> BotOut:
    return BotOut(
        id=bot.id,
        owner=bot.owner_user_id,
        name=bot.name,
        description=bot.description,
        status=bot.status,
        version=version.version,
        version_id=version.id,
        created_at=bot.created_at,
        updated_at=bot.updated_at,
        strategy=version.strategy,
    )


def _new_version(bot: Bot, number: int, strategy: Strategy) -> BotVersion:
    return BotVersion(
        bot_id=bot.id,
        version=number,
        strategy=strategy.model_dump(mode="json"),
        config_hash=strategy.config_hash(),
    )


def _refuse_prices_only_an_admin_sets(
    caller: Caller, strategy: Strategy, kept: Strategy | None
) -> None:
    """A voter's price decides what the service's LLM keys are charged, so only an admin
    sets one; anyone may send back what `kept` (the strategy in force) or the service set."""
    if caller.scope is Scope.admin:
        return
    beyond = strategy.prices_set_beyond(kept)
    if beyond:
        raise Forbidden(
            "only an admin key may give a voter a price: leave `price` out, and a model in "
            "LLM_PRICES is charged the service's price",
            details=[
                {"loc": f"body.strategy.voters.{i}.price", "message": "only an admin key sets it"}
                for i in beyond
            ],
        )


def _priced(strategy: Strategy, settings: Settings) -> Strategy:
    """The strategy with the service's default voters, if it names none, refused unless every
    voter's cost is known and its budget is within the service's cap: a budget that cannot
    count a vote's cost does not hold."""
    strategy = strategy.with_default_voters(
        settings.configured_llm_providers(), settings.llm_prices
    )
    unpriced = sorted(
        {v.model for v in strategy.voters or [] if v.price_in(settings.llm_prices) is None}
    )
    if unpriced:
        raise Unprocessable(
            f"no price for model(s) {', '.join(unpriced)}: use a priced model "
            f"({', '.join(sorted(settings.llm_prices))}) or give the voter a price "
            '({"input": "0.15", "output": "0.60"} USD per million tokens)',
            details=[
                {"loc": "body.strategy.voters", "message": f"unpriced: {m}"} for m in unpriced
            ],
        )
    if strategy.llm_daily_budget_usd > settings.max_llm_daily_budget_usd:
        raise Unprocessable(
            f"llm_daily_budget_usd may be at most {settings.max_llm_daily_budget_usd}",
            details=[
                {"loc": "body.strategy.llm_daily_budget_usd", "message": "above the service's cap"}
            ],
        )
    return strategy


async def create_bot(
    session: AsyncSession, caller: Caller, body: BotCreate, settings: Settings
) -> tuple[Bot, BotVersion]:
    assert caller.owner_user_id is not None, "admin and developer keys always have an owner"
    bot = Bot(
        owner_user_id=caller.owner_user_id,
        name=body.name,
        description=body.description,
        status="active",
        current_version=1,
    )
    _refuse_prices_only_an_admin_sets(caller, body.strategy, None)
    session.add(bot)
    await session.flush()
    version = _new_version(bot, 1, _priced(body.strategy, settings))
    session.add(version)
    await session.flush()
    return bot, version


async def get_bot(session: AsyncSession, bot_id: str) -> tuple[Bot, BotVersion]:
    bot = await repository.get(session, bot_id)
    if bot is None:
        raise NotFound("bot")
    return bot, await repository.current_version(session, bot)


async def _owned_bot(session: AsyncSession, caller: Caller, bot_id: str) -> Bot:
    bot = await repository.get(session, bot_id)
    # Another developer's bot is missing to the caller, word for word: a foreign resource
    # answers like an unknown one (the contract's 404).
    if bot is None or (
        caller.scope is not Scope.admin and bot.owner_user_id != caller.owner_user_id
    ):
        raise NotFound("bot")
    return bot


async def update_bot(
    session: AsyncSession,
    caller: Caller,
    bot_id: str,
    body: BotUpdate,
    settings: Settings,
) -> tuple[Bot, BotVersion]:
    bot = await _owned_bot(session, caller, bot_id)
    version = await repository.current_version(session, bot)
    if body.name is not None:
        bot.name = body.name
    if body.description is not None:
        bot.description = body.description
    if body.status is not None:
        bot.status = body.status
    if body.strategy is not None:
        in_force = Strategy.model_validate(version.strategy)
        _refuse_prices_only_an_admin_sets(caller, body.strategy, in_force)
        strategy = _priced(body.strategy, settings)
        # Only a real change of strategy makes a new version; renters stay pinned to theirs.
        if strategy.config_hash() != version.config_hash:
            bot.current_version += 1
            version = _new_version(bot, bot.current_version, strategy)
            session.add(version)
    await session.flush()
    return bot, version


async def register_bot(
    session: AsyncSession,
    caller: Caller,
    bot_id: str,
    body: RegistrationCreate,
    *,
    create_marketplace: bool,
) -> BotMarketplaceRegistration:
    """List the bot on the marketplace the body names (made if missing when
    `create_marketplace`, in development)."""
    bot = await _owned_bot(session, caller, bot_id)
    marketplace = await marketplaces.resolve(
        session, body.marketplace, create_missing=create_marketplace
    )
    registration = BotMarketplaceRegistration(
        bot_id=bot.id,
        marketplace_id=marketplace.id,
        title=body.title or bot.name,
        description=body.description,
        price=body.price,
        currency=body.currency,
        billing_period=body.billing_period,
        status="active",
    )
    session.add(registration)
    await session.flush()
    return registration
