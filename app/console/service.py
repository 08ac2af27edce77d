"""What the developer's pages show, read through the domains' repositories and services."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.authenticator import Caller
from app.api_keys.schemas import Scope
from app.backtests import service as backtests
from app.bots import budget
from app.bots.strategy import Strategy
from app.console import repository
from app.models import Bot, BotVersion, Decision, LlmVote
from app.subscriptions import repository as subscriptions
from app.subscriptions.schemas import Mode

SPEND_WINDOW_DAYS = 30


def bots_owner(caller: Caller) -> str | None:
    """Whose bots a session lists: a developer's own, an admin's every bot (None)."""
    return None if caller.scope is Scope.admin else caller.owner_user_id or ""


async def visible_bot(session: AsyncSession, caller: Caller, bot_id: str) -> Bot:
    """The bot, if the session's key may see it: its developer's or an admin's; any other is
    not found, like a missing one."""
    return await backtests.visible_bot(
        session,
        bot_id,
        admin=caller.scope is Scope.admin,
        owner_user_id=caller.owner_user_id,
        renter_marketplace_id=None,
    )


@dataclass(frozen=True)
class BotLine:
    bot: Bot
    version: BotVersion
    renters: dict[str, int]  # by mode
    decisions_today: int
    spent_today: Decimal
    spent_30_days: Decimal
    daily_budget: Decimal


def _usd(amount: Decimal) -> Decimal:
    """As the budget's messages show USD: to the cent's hundredth, whatever the database's
    scale."""
    return amount.quantize(budget.USD_PLACES)


def _day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def bot_lines(
    session: AsyncSession, caller: Caller, after_id: str | None, limit: int, now: datetime
) -> list[BotLine]:
    """A page of the session's bots with today's figures; `limit` + 1 read, to tell whether
    another page follows."""
    rows = await repository.bots_page(session, bots_owner(caller), after_id, limit)
    ids = [bot.id for bot, _ in rows]
    renters = await repository.renters_by_mode(session, ids) if ids else {}
    today = _day(now)
    decided = await repository.decisions_since(session, ids, today) if ids else {}
    tomorrow = today + timedelta(days=1)
    # The budget's own reckoning of what counts against it (votes and `ask` runs).
    spent_today = await budget.spent_per_bot(session, ids, today, tomorrow) if ids else {}
    month_start = tomorrow - timedelta(days=SPEND_WINDOW_DAYS)
    spent_month = await budget.spent_per_bot(session, ids, month_start, tomorrow) if ids else {}
    lines = []
    for bot, version in rows:
        lines.append(
            BotLine(
                bot=bot,
                version=version,
                renters={mode.value: renters.get(bot.id, {}).get(mode.value, 0) for mode in Mode},
                decisions_today=decided.get(bot.id, 0),
                spent_today=_usd(spent_today.get(bot.id, Decimal(0))),
                spent_30_days=_usd(spent_month.get(bot.id, Decimal(0))),
                daily_budget=_usd(Strategy.model_validate(version.strategy).llm_daily_budget_usd),
            )
        )
    return lines


@dataclass(frozen=True)
class DecisionLine:
    decision: Decision
    version: int
    votes: Sequence[LlmVote]


async def latest_decisions(session: AsyncSession, bot_id: str, limit: int) -> list[DecisionLine]:
    rows = await repository.latest_decisions(session, bot_id, limit)
    votes = await subscriptions.votes_of(session, [d.id for d, _ in rows])
    by_decision: dict[str, list[LlmVote]] = {}
    for vote in votes:
        by_decision.setdefault(vote.decision_id, []).append(vote)
    return [DecisionLine(d, version, by_decision.get(d.id, [])) for d, version in rows]


@dataclass(frozen=True)
class VersionLine:
    version: BotVersion
    changed: list[str]  # the strategy's top-level parts that differ from the version before


def version_history(versions: Sequence[BotVersion]) -> list[VersionLine]:
    """Newest first, each with what changed from the one before it."""
    lines, before = [], None
    for version in versions:
        changed = (
            ["first version"]
            if before is None
            else sorted(
                key
                for key in set(version.strategy) | set(before.strategy)
                if version.strategy.get(key) != before.strategy.get(key)
            )
            or ["nothing in the strategy"]
        )
        lines.append(VersionLine(version, changed))
        before = version
    return lines[::-1]
