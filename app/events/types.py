"""The kinds of event the outbox holds, and what a developer key may see of them."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    decision_made = "decision.made"
    trade_filled = "trade.filled"
    trade_refused = "trade.refused"
    trade_failed = "trade.failed"
    position_opened = "position.opened"
    position_closed = "position.closed"
    exit_triggered = "exit.triggered"
    subscription_created = "subscription.created"
    subscription_paused = "subscription.paused"
    subscription_resumed = "subscription.resumed"
    subscription_cancelled = "subscription.cancelled"
    subscription_expiring = "subscription.expiring"
    subscription_expired = "subscription.expired"
    risk_paused = "risk.paused"
    credentials_invalid = "credentials.invalid"
    budget_exhausted = "budget.exhausted"
    backtest_finished = "backtest.finished"
    webhook_disabled = "webhook.disabled"


# Bot-level facts a bot's developer may follow; every other type concerns a renter.
DEVELOPER_TYPES = frozenset({EventType.decision_made, EventType.backtest_finished})
# Facts about what a key's owner set up (not about a renter): addressed to the developer's
# user, or to no user for a marketplace's (admin sees those), never to the renters' feed.
OWNER_NOTICES = frozenset({EventType.webhook_disabled})
