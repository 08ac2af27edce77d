from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.bots.strategy import Strategy
from app.core.schemas import Amount


class BotCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "BTC trend follower"}]}
    )

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=5000)
    strategy: Strategy = Field(default_factory=Strategy)


class BotUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=5000)
    status: Literal["active", "archived"] | None = None
    strategy: Strategy | None = Field(
        default=None, description="a changed strategy makes a new bot version"
    )


class BotSummaryOut(BaseModel):
    """A bot in the catalogue: everything but its strategy (GET /bots/{id} has that)."""

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
    strategy: dict[str, Any]


class RegistrationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"price": "2.5", "currency": "ICP"}]},
    )

    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    price: Decimal = Field(ge=0, max_digits=20, decimal_places=8)
    currency: Literal["ICP", "USDT", "USD"] = "ICP"
    billing_period: Literal["day", "week", "month"] = "month"


class RegistrationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    bot_id: str
    title: str
    description: str
    price: Amount
    currency: str
    billing_period: str
    status: str
    created_at: datetime
