"""The scopes an API key is issued for, and what the API-key endpoints take and return."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

from app.core.principal_assertions import AssertionMode
from app.marketplaces.schemas import (
    EXAMPLE_ASSERTION_KEY_OUT,
    EXAMPLE_ED25519,
    AssertionKeyIn,
    AssertionKeyOut,
    MarketplaceName,
)
from app.models import ApiKey, Marketplace, MarketplaceAssertionKey

_EXAMPLE_KEY_OUT: JsonDict = {
    "id": "0193b6c8a0e1d2c3b4a5968778695a4b",
    "name": "icp-marketplace",
    "scope": "marketplace",
    "prefix": "k3v9q2xa",
    "owner": None,
    "marketplace": "icp-main",
    "created_at": "2026-01-15T09:30:00Z",
    "last_used_at": "2026-01-16T12:00:05Z",
    "revoked_at": None,
    "assertion_mode": "required",
    "assertion_keys": [EXAMPLE_ASSERTION_KEY_OUT],
    "rate_limit_per_minute": None,
}
RATE_LIMIT_DESCRIPTION = (
    "requests a minute for the whole key, all its renters together; default (null): "
    "MARKETPLACE_RATE_LIMIT_PER_MINUTE for a marketplace key, else RATE_LIMIT_PER_MINUTE. "
    "A marketplace key's renters have RATE_LIMIT_PER_MINUTE each besides."
)


class Scope(StrEnum):
    admin = "admin"
    developer = "developer"
    marketplace = "marketplace"


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "icp-marketplace", "scope": "marketplace", "marketplace": "icp-main"},
                {
                    "name": "icp-marketplace",
                    "scope": "marketplace",
                    "marketplace": "icp-main",
                    "assertion_keys": [{"public_key": EXAMPLE_ED25519, "algorithm": "ed25519"}],
                },
            ]
        },
    )

    name: str = Field(min_length=1, max_length=100)
    scope: Scope
    owner: str | None = Field(
        default=None,
        max_length=32,
        description="id of the user this key acts as; a developer key without one gets a "
        "new developer user",
    )
    marketplace: MarketplaceName | None = Field(
        default=None,
        description="marketplace keys only: the marketplace whose renters the key acts for "
        "(default: `default`); made on the fly in development, elsewhere it must exist",
    )
    assertion_keys: list[AssertionKeyIn] = Field(
        default_factory=list,
        max_length=8,
        description="marketplace keys only: public keys of the canister whose signed principal "
        "assertions prove the renter (docs/principal-assertions.md), added to the marketplace's",
    )
    assertion_mode: AssertionMode | None = Field(
        default=None,
        description="the marketplace's mode; default: unchanged, or required when assertion "
        "keys are given to a marketplace whose mode is off",
    )
    rate_limit_per_minute: int | None = Field(
        default=None,
        ge=1,
        description=RATE_LIMIT_DESCRIPTION,
    )


class ApiKeyUpdate(BaseModel):
    """Kept for marketplaces made before keys named them: the mode is the key's marketplace's."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"assertion_mode": "required"}]}
    )

    assertion_mode: AssertionMode


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_KEY_OUT]})

    id: str
    name: str
    scope: Scope
    prefix: str
    owner: str | None
    marketplace: str | None = Field(description="a marketplace key's marketplace, by name")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    assertion_mode: AssertionMode = Field(description="the marketplace's")
    assertion_keys: list[AssertionKeyOut] = Field(description="the marketplace's")
    rate_limit_per_minute: int | None = Field(description=RATE_LIMIT_DESCRIPTION)

    @classmethod
    def of(
        cls,
        row: ApiKey,
        marketplace: Marketplace | None,
        assertion_keys: list[MarketplaceAssertionKey],
    ) -> ApiKeyOut:
        return cls(
            id=row.id,
            name=row.name,
            scope=Scope(row.scope),
            prefix=row.prefix,
            owner=row.owner_user_id,
            marketplace=marketplace.name if marketplace else None,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
            assertion_mode=AssertionMode(marketplace.assertion_mode if marketplace else "off"),
            assertion_keys=[AssertionKeyOut.of(k) for k in assertion_keys],
            rate_limit_per_minute=row.rate_limit_per_minute,
        )


class ApiKeyCreated(ApiKeyOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_EXAMPLE_KEY_OUT,
                    "last_used_at": None,
                    "key": "bmk_k3v9q2xa_<secret shown once>",
                }
            ]
        }
    )

    key: str = Field(description="the key itself; shown only in this response")
