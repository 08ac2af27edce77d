"""Request and response bodies of bots and marketplace registrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

from app.bots.strategy import Strategy, Voter
from app.core.schemas import Amount
from app.marketplaces.schemas import MarketplaceName
from app.marketplaces.service import DEFAULT_MARKETPLACE
from app.models import BotMarketplaceRegistration

_EXAMPLE_BOT_ID = "0193b6c8a1f27c3e9d4b5a6f7e8d9c0b"
# The default strategy with one voter, as a bot created with `{"name": ...}` stores it.
_EXAMPLE_STRATEGY = Strategy(voters=[Voter(provider="openai", model="gpt-4o-mini")]).model_dump(
    mode="json"
)


class BotCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "BTC trend follower"}]}
    )

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=5000)
    strategy: Strategy = Field(default_factory=Strategy)


class BotUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"description": "Trend following on 1h candles, LLM-confirmed"},
                {"strategy": {"ensemble": {"threshold": "0.3"}}},
            ]
        },
    )

    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=5000)
    status: Literal["active", "archived"] | None = None
    strategy: Strategy | None = Field(
        default=None, description="a changed strategy makes a new bot version"
    )


_EXAMPLE_BOT_SUMMARY: JsonDict = {
    "id": _EXAMPLE_BOT_ID,
    "owner": "0193b6c89f0e1d2c3b4a59687a6b5c4d",
    "name": "BTC trend follower",
    "description": "",
    "status": "active",
    "version": 1,
    "version_id": "0193b6c8a1f37d4e5f6a7b8c9d0e1f2a",
    "created_at": "2026-01-15T09:30:00Z",
    "updated_at": "2026-01-15T09:30:00Z",
}


class BotSummaryOut(BaseModel):
    """A bot in the catalogue: everything but its strategy (GET /bots/{id} has that)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_BOT_SUMMARY]})

    id: str
    owner: str
    name: str
    description: str
    status: str
    version: int
    version_id: str
    created_at: datetime
    updated_at: datetime


class BotOut(BotSummaryOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_EXAMPLE_BOT_SUMMARY, "strategy": _EXAMPLE_STRATEGY}]}
    )

    strategy: dict[str, Any]


class RegistrationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"price": "2.5", "currency": "ICP", "marketplace": "icp-main"}]
        },
    )

    marketplace: MarketplaceName = Field(
        default=DEFAULT_MARKETPLACE,
        description="the marketplace whose renters may subscribe; list a bot on several with "
        "one registration each. Made on the fly in development, elsewhere it must exist",
    )

    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    price: Amount = Field(ge=0, max_digits=20, decimal_places=8)
    currency: Literal["ICP", "USDT", "USD"] = "ICP"
    billing_period: Literal["day", "week", "month"] = "month"


class RegistrationOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0193b6c8b2a3948576a5b4c3d2e1f0a9",
                    "bot_id": _EXAMPLE_BOT_ID,
                    "marketplace": "icp-main",
                    "title": "BTC trend follower",
                    "description": "",
                    "price": "2.5",
                    "currency": "ICP",
                    "billing_period": "month",
                    "status": "active",
                    "created_at": "2026-01-15T09:35:00Z",
                }
            ]
        },
    )

    id: str
    bot_id: str
    marketplace: str
    title: str
    description: str
    price: Amount
    currency: str
    billing_period: str
    status: str
    created_at: datetime

    @classmethod
    def of(cls, row: BotMarketplaceRegistration, marketplace: str) -> RegistrationOut:
        return cls(
            id=row.id,
            bot_id=row.bot_id,
            marketplace=marketplace,
            title=row.title,
            description=row.description,
            price=row.price,
            currency=row.currency,
            billing_period=row.billing_period,
            status=row.status,
            created_at=row.created_at,
        )
