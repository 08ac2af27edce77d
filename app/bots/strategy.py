"""A bot's strategy config: indicators, LLM voters, the ensemble rule and risk defaults.

Every field has a default, so `{"name": ...}` alone makes a working bot. The config is frozen
into a bot version; its hash keys the shared decisions of that version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from app.core.schemas import (
    MAX_QUOTE,
    PERCENT_PLACES,
    QUOTE_PLACES,
    Amount,
    PositiveGainPercent,
    PositivePercent,
    PositiveQuote,
)
from app.integrations.llm.base import ModelPrice

DEFAULT_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
    "openai_compatible": "llama3.1",
}

LOCAL_PRICE = ModelPrice(input=Decimal(0), output=Decimal(0))

Provider = Literal["openai", "anthropic", "gemini", "openai_compatible"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Indicator(_Strict):
    weight: Amount = Field(default=Decimal(1), ge=0, le=100, decimal_places=PERCENT_PLACES)
    period: int | None = Field(default=None, ge=2, le=500)


IndicatorName = Literal["rsi", "macd", "ema_cross", "sma_cross", "bbands", "atr", "volume"]


def _default_indicators() -> dict[IndicatorName, Indicator]:
    return {name: Indicator() for name in get_args(IndicatorName)}


class Voter(_Strict):
    provider: Provider
    model: str = Field(min_length=1, max_length=100)
    weight: Amount = Field(default=Decimal(1), gt=0, le=100, decimal_places=PERCENT_PLACES)
    price: ModelPrice | None = Field(
        default=None,
        description="USD per million tokens, for a model the service has no price for; a "
        "model it prices is billed at least the service's price. Only an admin key may set "
        "one: a developer's key may send back a price already on the bot, and the price 0 "
        "the service gives its default openai_compatible model, but no other",
        examples=[{"input": "0.15", "output": "0.60"}],
    )

    def price_in(self, prices: Mapping[str, Mapping[str, Decimal]]) -> ModelPrice | None:
        """The service's price for its model, raised per token to its own where that is
        higher; its own for a model the service does not price; None: it may not be asked."""
        known = prices.get(self.model)
        if known is None:
            return self.price
        service = ModelPrice.model_validate(known)
        if self.price is None:
            return service
        return ModelPrice(
            input=max(service.input, self.price.input),
            output=max(service.output, self.price.output),
        )

    def priced_by_service(self) -> bool:
        """Its price is the one the service's default panel gives its local model."""
        return (
            self.provider == "openai_compatible"
            and self.model == DEFAULT_MODELS["openai_compatible"]
            and self.price == LOCAL_PRICE
        )


class Ensemble(_Strict):
    indicator_weight: Amount = Field(
        default=Decimal(1), ge=0, le=100, decimal_places=PERCENT_PLACES
    )
    threshold: Amount = Field(default=Decimal("0.25"), gt=0, le=1, decimal_places=PERCENT_PLACES)
    quorum: int | None = Field(
        default=None, ge=0, le=20, description="LLM votes needed; default 2 when 2+ voters"
    )
    fallback: Literal["hold", "indicators_only"] = "hold"
    conflict_confidence: Amount = Field(
        default=Decimal("0.6"), ge=0, le=1, decimal_places=PERCENT_PLACES
    )


class RiskDefaults(_Strict):
    max_trades_per_day: int = Field(default=24, ge=1, le=10_000)
    max_position_quote: PositiveQuote | None = None
    daily_loss_limit_quote: PositiveQuote | None = None
    max_drawdown_pct: Amount = Field(
        default=Decimal(25), gt=0, le=100, decimal_places=PERCENT_PLACES
    )
    cooldown_minutes_after_loss: int = Field(default=0, ge=0, le=10_080)
    stop_loss_pct: PositivePercent | None = None
    take_profit_pct: PositiveGainPercent | None = None
    trailing_stop_pct: PositivePercent | None = None


class Strategy(_Strict):
    indicators: dict[IndicatorName, Indicator] = Field(default_factory=_default_indicators)
    voters: list[Voter] | None = Field(
        default=None,
        max_length=8,
        description="default: every LLM provider configured on the service, equal weights",
    )
    ensemble: Ensemble = Field(default_factory=Ensemble)
    risk: RiskDefaults = Field(default_factory=RiskDefaults)
    llm_daily_budget_usd: Amount = Field(
        default=Decimal(5), ge=0, le=MAX_QUOTE, decimal_places=QUOTE_PLACES
    )
    close_position_on_expiry: bool = True

    def with_default_voters(
        self, providers: list[str], prices: Mapping[str, Mapping[str, Decimal]]
    ) -> Strategy:
        if self.voters is not None:
            return self
        voters = [Voter(provider=p, model=DEFAULT_MODELS[p]) for p in providers]
        # The OpenAI-compatible server is taken to be a local model, free per token, unless
        # the service prices its default model.
        voters = [
            v.model_copy(update={"price": LOCAL_PRICE})
            if v.provider == "openai_compatible" and v.price_in(prices) is None
            else v
            for v in voters
        ]
        return self.model_copy(update={"voters": voters})

    def prices_set_beyond(self, kept: Strategy | None) -> list[int]:
        """The positions of the voters whose price neither the service gave nor `kept` (the
        strategy in force) already holds for that provider and model: what only an admin
        may set, since a price decides what the service's LLM keys are charged."""
        held = {(v.provider, v.model, v.price) for v in (kept.voters if kept else None) or []}
        return [
            i
            for i, v in enumerate(self.voters or [])
            if v.price is not None
            and not v.priced_by_service()
            and (v.provider, v.model, v.price) not in held
        ]

    def config_hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
