"""The event envelope (the same in the feed, webhooks and the WebSocket), the feed's page, and
the live stream's tickets and WebSocket messages."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from app.events.types import EventType

_EXAMPLE_EVENT: dict[str, JsonValue] = {
    "id": "evt_0193b6c8a1f27c3e9d4b5a6f7e8d9c0b",
    "type": "trade.filled",
    "occurred_at": "2026-11-27T10:00:01.250000Z",
    "principal": "ryjl3-tyaaa-aaaaa-aaaba-cai",
    "subscription_id": "0193b6c8a1f27c3e9d4b5a6f7e8d9c0c",
    "bot_id": "0193b6c8a1f27c3e9d4b5a6f7e8d9c0d",
    "data": {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "quantity": "0.00105",
        "price": "95123.45",
        "fee": "0.00000105",
        "quote_amount": "99.87962",
    },
}
_EXAMPLE_TICKET = "Vx3pQk7LrN2mZcT8yF1aWbE5hJ0uS9dG4oKiR6tYvXs"
_EXAMPLE_CURSOR = "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMmE"


class EventOut(BaseModel):
    """One fact, never changed after it happened."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_EVENT]})

    id: str = Field(description="`evt_` and the event's id; a webhook's `webhook-id`")
    type: EventType
    occurred_at: datetime = Field(description="when the change it reports was made, UTC")
    principal: str | None = Field(
        description="the renter it concerns; null for a bot-level event and for a developer key"
    )
    subscription_id: str | None = Field(description="null for a developer key")
    bot_id: str | None
    data: dict[str, JsonValue] = Field(
        description="what a UI needs to render the event; amounts are decimal strings"
    )


class EventPage(BaseModel):
    """Identical requests get identical bytes while the page is full. A short page reaches the
    newest numbered event: it grows, and its `next_cursor` moves on, as events are numbered,
    so two reads (or two replicas' reads) of it may differ until then."""

    items: list[EventOut]
    next_cursor: str = Field(
        description="pass as `after` to read on: a full page's last event, a short page's "
        "newest event numbered (so the next poll starts there, filtered or not); before any "
        "event, the position you asked from",
        examples=[_EXAMPLE_CURSOR],
    )


class StreamTicketOut(BaseModel):
    """A single-use ticket for one renter's browser to open the live stream."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ticket": _EXAMPLE_TICKET,
                    "expires_at": "2026-11-27T10:01:00Z",
                    "url": f"/api/v1/events/ws?ticket={_EXAMPLE_TICKET}",
                }
            ]
        }
    )

    ticket: str = Field(description="opens one stream, once, before `expires_at`")
    expires_at: datetime
    url: str = Field(
        description="the WebSocket's path with the ticket; the same `?ticket=` opens "
        "`/api/v1/events/stream` (Server-Sent Events) instead",
    )


class StreamFrame(BaseModel):
    """An event on the WebSocket: the envelope, unchanged, with its cursor to resume after."""

    type: Literal["event"] = "event"
    cursor: str
    event: EventOut


class Subscribe(BaseModel):
    """Only these event types from now on (those already queued included); null: every type."""

    type: Literal["subscribe"]
    types: list[EventType] | None


class Resume(BaseModel):
    """Replay every event after this cursor from the outbox, then go on live."""

    type: Literal["resume"]
    after: str
