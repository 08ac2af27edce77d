"""What the webhook endpoints take and return."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import JsonDict, JsonValue

from app.events.feed import envelope_id
from app.events.types import EventType
from app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.models.webhooks import DISPATCHED, MAX_URL_LENGTH
from app.webhooks.targets import shape_problem

_EXAMPLE_ENDPOINT: JsonDict = {
    "id": "0193b6c8a1f27c3e9d4b5a6f7e8d9c0e",
    "url": "https://marketplace.example/hooks/botmarket",
    "types": ["trade.filled", "position.closed"],
    "description": "renters' trades",
    "enabled": True,
    "created_at": "2026-11-27T10:00:00Z",
    "disabled_at": None,
    "disabled_reason": None,
}
_EXAMPLE_ATTEMPTS: list[JsonValue] = [
    {
        "attempted_at": "2026-11-27T10:00:02Z",
        "status_code": 503,
        "duration_ms": 41,
        "error": "answered 503",
    },
    {"attempted_at": "2026-11-27T10:00:07Z", "status_code": 200, "duration_ms": 38, "error": None},
]
_EXAMPLE_DELIVERY: JsonDict = {
    "id": "0193b6c8a1f27c3e9d4b5a6f7e8d9c0f",
    "event_id": "evt_0193b6c8a1f27c3e9d4b5a6f7e8d9c0b",
    "status": "delivered",
    "replay": False,
    "created_at": "2026-11-27T10:00:02Z",
    "next_attempt_at": None,
    "attempts": _EXAMPLE_ATTEMPTS,
}
_URL_DESCRIPTION = (
    f"http(s), at most {MAX_URL_LENGTH} characters; in production https to a public address"
)
_TYPES_DESCRIPTION = "event types to receive; empty: every event this key may read in the feed"


def _usable(url: str) -> str:
    problem = shape_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://marketplace.example/hooks/botmarket",
                    "types": ["trade.filled", "position.closed"],
                }
            ]
        },
    )

    # No max_length here: the validator says why in one message, whatever the length.
    url: str = Field(description=_URL_DESCRIPTION)
    types: list[EventType] = Field(default_factory=list, description=_TYPES_DESCRIPTION)
    description: str | None = Field(default=None, max_length=200)

    _url_is_usable = field_validator("url")(_usable)


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"enabled": True}, {"types": []}]}
    )

    url: str | None = Field(default=None, description=_URL_DESCRIPTION)
    types: list[EventType] | None = Field(default=None, description=_TYPES_DESCRIPTION)
    description: str | None = Field(default=None, max_length=200)
    enabled: bool | None = Field(
        default=None,
        description="true again after the endpoint was disabled: its pending deliveries resume",
    )

    @field_validator("url")
    @classmethod
    def _url_is_usable(cls, url: str | None) -> str | None:
        return None if url is None else _usable(url)


class WebhookOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_ENDPOINT]})

    id: str
    url: str
    types: list[EventType]
    description: str | None
    enabled: bool
    created_at: datetime
    disabled_at: datetime | None = Field(description="when it was disabled after failing")
    disabled_reason: str | None

    @classmethod
    def of(cls, row: WebhookEndpoint) -> WebhookOut:
        return cls(
            id=row.id,
            url=row.url,
            types=[EventType(name) for name in row.types],
            description=row.description,
            enabled=row.enabled,
            created_at=row.created_at,
            disabled_at=row.disabled_at,
            disabled_reason=row.disabled_reason,
        )


class WebhookWithSecret(WebhookOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_EXAMPLE_ENDPOINT, "secret": "whsec_<shown once>"}]}
    )

    secret: str = Field(
        description="the signing secret (`whsec_` + base64), for standardwebhooks' "
        "Webhook(secret).verify; shown only in this response"
    )

    @classmethod
    def of_new(cls, row: WebhookEndpoint, secret: str) -> WebhookWithSecret:
        return cls(**WebhookOut.of(row).model_dump(), secret=secret)


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class AttemptOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": _EXAMPLE_ATTEMPTS})

    attempted_at: datetime
    status_code: int | None = Field(description="the receiver's answer; null: none came")
    duration_ms: int
    error: str | None = Field(description="why it failed, when it did")

    @classmethod
    def of(cls, row: WebhookAttempt) -> AttemptOut:
        return cls(
            attempted_at=row.attempted_at,
            status_code=row.status_code,
            duration_ms=row.duration_ms,
            error=row.error,
        )


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_DELIVERY]})

    id: str
    event_id: str = Field(description="the event's `evt_` id, sent as `webhook-id`")
    status: DeliveryStatus
    replay: bool = Field(description="asked for again by a replay")
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="the next retry; null once settled")
    attempts: list[AttemptOut] = Field(description="every attempt, oldest first")

    @classmethod
    def of(cls, row: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
        return cls(
            id=row.id,
            event_id=envelope_id(row.event_id),
            status=DeliveryStatus(row.status),
            replay=row.source != DISPATCHED,
            created_at=row.created_at,
            next_attempt_at=row.next_attempt_at,
            attempts=[AttemptOut.of(attempt) for attempt in attempts],
        )


class ReplayIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"after": "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMmE"}]},
    )

    after: str = Field(description="a feed cursor (`next_cursor` of GET /api/v1/events)")


class ReplayOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"deliveries": 42, "next_cursor": "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwNmE"}
            ]
        }
    )

    deliveries: int = Field(description="events queued for delivery again")
    next_cursor: str = Field(
        description="where this replay stopped: replay again from it while `deliveries` "
        "is the most one replay takes"
    )
