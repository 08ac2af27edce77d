"""The scopes an API key is issued for, and what the API-key endpoints take and return."""

from __future__ import annotations

import base64
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from app.core.principal_assertions import (
    Algorithm,
    AssertionMode,
    InvalidPublicKey,
    decode_public_key,
)
from app.models import ApiKey, ApiKeyAssertionKey

_EXAMPLE_ED25519 = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
_EXAMPLE_ASSERTION_KEY_OUT: JsonDict = {
    "id": "0193b6c8a1f27c3e9d4b5a6f7e8d9c0b",
    "algorithm": "ed25519",
    "public_key": _EXAMPLE_ED25519,
    "created_at": "2026-01-15T09:30:00Z",
}
_EXAMPLE_KEY_OUT: JsonDict = {
    "id": "0193b6c8a0e1d2c3b4a5968778695a4b",
    "name": "icp-marketplace",
    "scope": "marketplace",
    "prefix": "k3v9q2xa",
    "owner": None,
    "created_at": "2026-01-15T09:30:00Z",
    "last_used_at": "2026-01-16T12:00:05Z",
    "revoked_at": None,
    "assertion_mode": "required",
    "assertion_keys": [_EXAMPLE_ASSERTION_KEY_OUT],
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


class AssertionKeyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"public_key": _EXAMPLE_ED25519, "algorithm": "ed25519"}]},
    )

    public_key: str = Field(
        max_length=64,
        description="base64: Ed25519 raw 32 bytes, or secp256k1 SEC1 compressed 33 bytes",
    )
    algorithm: Algorithm = Algorithm.ed25519

    @model_validator(mode="after")
    def _is_a_key(self) -> AssertionKeyIn:
        try:
            self.raw()
        except InvalidPublicKey as exc:
            raise ValueError(f"public_key: {exc}") from exc
        return self

    def raw(self) -> bytes:
        return decode_public_key(self.algorithm, self.public_key)


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "icp-marketplace", "scope": "marketplace"},
                {
                    "name": "icp-marketplace",
                    "scope": "marketplace",
                    "assertion_keys": [{"public_key": _EXAMPLE_ED25519, "algorithm": "ed25519"}],
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
    assertion_keys: list[AssertionKeyIn] = Field(
        default_factory=list,
        max_length=8,
        description="marketplace keys only: public keys of the canister whose signed principal "
        "assertions prove the renter (docs/principal-assertions.md)",
    )
    assertion_mode: AssertionMode | None = Field(
        default=None, description="default: required when assertion_keys are given, else off"
    )
    rate_limit_per_minute: int | None = Field(
        default=None,
        ge=1,
        description=RATE_LIMIT_DESCRIPTION,
    )


class ApiKeyUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"assertion_mode": "required"}]}
    )

    assertion_mode: AssertionMode


class AssertionKeyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_ASSERTION_KEY_OUT]})

    id: str
    algorithm: Algorithm
    public_key: str
    created_at: datetime

    @classmethod
    def of(cls, row: ApiKeyAssertionKey) -> AssertionKeyOut:
        return cls(
            id=row.id,
            algorithm=Algorithm(row.algorithm),
            public_key=base64.b64encode(row.public_key).decode(),
            created_at=row.created_at,
        )


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_KEY_OUT]})

    id: str
    name: str
    scope: Scope
    prefix: str
    owner: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    assertion_mode: AssertionMode
    assertion_keys: list[AssertionKeyOut]
    rate_limit_per_minute: int | None = Field(description=RATE_LIMIT_DESCRIPTION)

    @classmethod
    def of(cls, row: ApiKey, assertion_keys: list[ApiKeyAssertionKey]) -> ApiKeyOut:
        return cls(
            id=row.id,
            name=row.name,
            scope=Scope(row.scope),
            prefix=row.prefix,
            owner=row.owner_user_id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
            assertion_mode=AssertionMode(row.assertion_mode),
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
