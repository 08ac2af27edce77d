"""What the marketplace endpoints take and return, and the assertion public keys they hold."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from app.core.principal_assertions import (
    Algorithm,
    AssertionMode,
    InvalidPublicKey,
    decode_public_key,
)
from app.models import Marketplace, MarketplaceAssertionKey

# Lower case only, so that two spellings can never name two marketplaces on a database that
# compares names case-insensitively.
MarketplaceName = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        min_length=1,
        max_length=64,
        examples=["icp-main"],
        description="lower-case letters, digits, '.', '_' and '-'",
    ),
]
EXAMPLE_ED25519 = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
EXAMPLE_ASSERTION_KEY_OUT: JsonDict = {
    "id": "0193b6c8a1f27c3e9d4b5a6f7e8d9c0b",
    "algorithm": "ed25519",
    "public_key": EXAMPLE_ED25519,
    "created_at": "2026-01-15T09:30:00Z",
}


class AssertionKeyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"public_key": EXAMPLE_ED25519, "algorithm": "ed25519"}]},
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


class AssertionKeyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_ASSERTION_KEY_OUT]})

    id: str
    algorithm: Algorithm
    public_key: str
    created_at: datetime

    @classmethod
    def of(cls, row: MarketplaceAssertionKey) -> AssertionKeyOut:
        return cls(
            id=row.id,
            algorithm=Algorithm(row.algorithm),
            public_key=base64.b64encode(row.public_key).decode(),
            created_at=row.created_at,
        )


class MarketplaceCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "icp-main"},
                {
                    "name": "icp-main",
                    "assertion_keys": [{"public_key": EXAMPLE_ED25519, "algorithm": "ed25519"}],
                },
            ]
        },
    )

    name: MarketplaceName
    assertion_keys: list[AssertionKeyIn] = Field(
        default_factory=list,
        max_length=8,
        description="public keys of the canister whose signed principal assertions prove "
        "the renter (docs/principal-assertions.md)",
    )
    assertion_mode: AssertionMode | None = Field(
        default=None, description="default: required when assertion_keys are given, else off"
    )


class MarketplaceOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0193b6c8a0e1d2c3b4a5968778695a4c",
                    "name": "icp-main",
                    "assertion_mode": "required",
                    "assertion_keys": [EXAMPLE_ASSERTION_KEY_OUT],
                    "created_at": "2026-01-15T09:30:00Z",
                }
            ]
        }
    )

    id: str
    name: str
    assertion_mode: AssertionMode
    assertion_keys: list[AssertionKeyOut]
    created_at: datetime

    @classmethod
    def of(cls, row: Marketplace, keys: list[MarketplaceAssertionKey]) -> MarketplaceOut:
        return cls(
            id=row.id,
            name=row.name,
            assertion_mode=AssertionMode(row.assertion_mode),
            assertion_keys=[AssertionKeyOut.of(k) for k in keys],
            created_at=row.created_at,
        )
