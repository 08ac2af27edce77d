"""Backtest rules: who may run one on which bot, its size and LLM cost checks at creation,
the owner's reads and cancellation, and the body it is shown as."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.backtests import repository
from app.backtests.history import open_times
from app.backtests.repository import Owner
from app.backtests.schemas import MAX_CANDLES, BacktestCreate, BacktestOut, Progress, Status
from app.backtests.votes import estimate_usd
from app.bots import budget
from app.bots import repository as bots
from app.bots.strategy import Strategy
from app.core.errors import Forbidden, InvalidStateTransition, NotFound, Unprocessable
from app.core.settings import Settings
from app.models import Backtest, Bot, BotVersion


async def rentable_bot(session: AsyncSession, bot_id: str, marketplace_id: str) -> Bot:
    """A bot a renter may backtest or subscribe to: active and listed on the renter's
    marketplace. Any other is not found, like a missing one."""
    bot = await bots.get(session, bot_id)
    if (
        bot is None
        or bot.status != "active"
        or not await repository.is_listed(session, bot.id, marketplace_id)
    ):
        raise NotFound("bot")
    return bot


async def visible_bot(
    session: AsyncSession,
    bot_id: str,
    *,
    admin: bool,
    owner_user_id: str | None,
    renter_marketplace_id: str | None,
) -> Bot:
    """The bot the caller may backtest: an admin any, a developer their own, a renter (of the
    marketplace given) a bot listed there. Any other is not found, like a missing one."""
    if renter_marketplace_id is not None:
        return await rentable_bot(session, bot_id, renter_marketplace_id)
    bot = await bots.get(session, bot_id)
    if bot is None or (not admin and bot.owner_user_id != owner_user_id):
        raise NotFound("bot")
    return bot


async def create(
    session: AsyncSession,
    bot: Bot,
    owner: Owner,
    body: BacktestCreate,
    settings: Settings,
    now: datetime,
) -> Backtest:
    version, candles = await _replayable(session, bot, owner, body, settings)
    estimate = Decimal(0)
    if body.llm == "ask":
        strategy = Strategy.model_validate(version.strategy)
        estimate = estimate_usd(strategy, settings, body.symbol, body.timeframe, candles)
        await _afford(session, bot.id, strategy, body, estimate, now)
    backtest = Backtest(
        bot_id=bot.id,
        bot_version_id=version.id,
        bot_version=version.version,
        owner_api_key_id=owner.api_key_id,
        owner_user_id=owner.user_id,
        symbol=body.symbol,
        timeframe=body.timeframe,
        start_at=body.start,
        end_at=body.end,
        quote_amount=body.quote_amount,
        llm=body.llm,
        max_llm_cost_usd=body.max_llm_cost_usd,
        llm_reserved_usd=estimate,
        llm_cost_usd=Decimal(0),
        status="queued",
        candles_done=0,
        candles_total=candles,
        fence=0,
    )
    session.add(backtest)
    await session.flush()
    return backtest


async def _replayable(
    session: AsyncSession, bot: Bot, owner: Owner, body: BacktestCreate, settings: Settings
) -> tuple[BotVersion, int]:
    """The version to replay and its number of candles, once the request's size, version and
    LLM mode are allowed; each refusal names its field."""
    if body.quote_amount > settings.max_quote_amount:
        raise Unprocessable(
            f"quote_amount is above the service's cap of {settings.max_quote_amount}",
            details=[{"loc": "body.quote_amount", "message": "above the service's cap"}],
        )
    candles = len(open_times(body.timeframe, body.start, body.end))
    if not 0 < candles <= MAX_CANDLES:
        raise Unprocessable(
            f"the window holds {candles} {body.timeframe} candles; a backtest replays 1 to "
            f"{MAX_CANDLES}",
            details=[{"loc": "body.end", "message": f"1 to {MAX_CANDLES} candles"}],
        )
    number = body.version or bot.current_version
    version = await repository.version_of(session, bot.id, number)
    if version is None:
        raise Unprocessable(
            f"the bot has no version {number}",
            details=[{"loc": "body.version", "message": "no such version"}],
        )
    if body.llm == "ask" and owner.user_id is not None:
        # A renter's run (its owner is the renter) would spend the bot's daily LLM budget,
        # which the live decisions of every renter of the bot need first.
        raise Forbidden(
            "a renter's backtest replays the recorded votes or indicators only: use "
            "llm=recorded or llm=indicators",
            details=[{"loc": "body.llm", "message": "ask is for the bot's owner"}],
        )
    return version, candles


async def _afford(
    session: AsyncSession,
    bot_id: str,
    strategy: Strategy,
    body: BacktestCreate,
    estimate: Decimal,
    now: datetime,
) -> None:
    """Refuse an `ask` run without a cap, whose estimate passes its cap, or what is left of
    the bot's LLM budget today; otherwise the estimate is reserved on that budget when the
    row commits."""
    if body.max_llm_cost_usd == 0:
        # Even a free model's calls are refused: a cap of 0 means no LLM calls.
        raise Unprocessable(
            "llm=ask needs a max_llm_cost_usd above 0: raise it or use llm=indicators",
            details=[{"loc": "body.max_llm_cost_usd", "message": "must be above 0 for llm=ask"}],
        )
    shown = estimate.quantize(budget.USD_PLACES)
    if estimate > body.max_llm_cost_usd:
        raise Unprocessable(
            f"asking the LLMs may cost up to {shown} USD, above max_llm_cost_usd "
            f"{body.max_llm_cost_usd}: raise it, shorten the window or use llm=recorded",
            details=[{"loc": "body.max_llm_cost_usd", "message": f"estimate {shown} USD"}],
        )
    await budget.lock(session, bot_id)
    daily_usd = strategy.llm_daily_budget_usd
    over = await budget.overdraft(session, bot_id, now, now, estimate, daily_usd)
    if over is not None:
        raise Unprocessable(
            f"the bot's daily LLM budget of {daily_usd} USD cannot take up to {shown} USD "
            f"more today ({(over.spent + over.reserved).quantize(budget.USD_PLACES)} spent "
            "or reserved)",
            details=[{"loc": "body.llm", "message": "the bot's LLM budget is spent"}],
        )


async def get_owned(session: AsyncSession, owner: Owner, backtest_id: str) -> Backtest:
    backtest = await repository.get_owned(session, backtest_id, owner)
    if backtest is None:
        raise NotFound("backtest")
    return backtest


async def cancel(session: AsyncSession, owner: Owner, backtest_id: str, now: datetime) -> None:
    backtest = await get_owned(session, owner, backtest_id)
    if await repository.cancel_active(session, backtest.id, now):
        return
    await session.refresh(backtest)
    if backtest.status != "cancelled":
        raise InvalidStateTransition(f"a {backtest.status} backtest cannot be cancelled")


def to_out(backtest: Backtest) -> BacktestOut:
    total = backtest.candles_total
    percent = Decimal(backtest.candles_done * 100) / total if total else Decimal(0)
    return BacktestOut(
        id=backtest.id,
        bot_id=backtest.bot_id,
        version=backtest.bot_version,
        symbol=backtest.symbol,
        timeframe=backtest.timeframe,
        start=backtest.start_at,
        end=backtest.end_at,
        quote_amount=backtest.quote_amount,
        llm=backtest.llm,
        max_llm_cost_usd=backtest.max_llm_cost_usd,
        llm_estimate_usd=backtest.llm_reserved_usd,
        llm_cost_usd=backtest.llm_cost_usd,
        status=Status(backtest.status),
        progress=Progress(
            candles_done=backtest.candles_done,
            candles_total=total,
            percent=percent.quantize(Decimal("0.01")),
        ),
        result=backtest.result,
        error=backtest.error,
        created_at=backtest.created_at,
    )
