"""Every ORM table, imported here so Alembic's autogenerate and `Base.metadata` see them all."""

from app.models.backtests import Backtest, Candle, SymbolRulesRecord
from app.models.base import Base
from app.models.bots import Bot, BotMarketplaceRegistration, BotVersion
from app.models.console import ConsoleSession
from app.models.credentials import ExchangeCredential
from app.models.events import Event, EventSequence, StreamTicket
from app.models.market_streams import LatestPrice, ProcessLease
from app.models.ops import AuditLog, IdempotencyRecord
from app.models.subscriptions import Subscription
from app.models.trading import (
    Decision,
    DecisionClaim,
    DecisionPrompt,
    LlmVote,
    PerformanceLog,
    Position,
    Trade,
)
from app.models.users import ApiKey, Marketplace, MarketplaceAssertionKey, User
from app.models.verification import ChainHead, ChainLink
from app.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "AuditLog",
    "Backtest",
    "Base",
    "Bot",
    "BotMarketplaceRegistration",
    "BotVersion",
    "Candle",
    "ChainHead",
    "ChainLink",
    "ConsoleSession",
    "Decision",
    "DecisionClaim",
    "DecisionPrompt",
    "Event",
    "EventSequence",
    "ExchangeCredential",
    "IdempotencyRecord",
    "LatestPrice",
    "LlmVote",
    "Marketplace",
    "MarketplaceAssertionKey",
    "PerformanceLog",
    "Position",
    "ProcessLease",
    "StreamTicket",
    "Subscription",
    "SymbolRulesRecord",
    "Trade",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
