"""Request and response bodies of exchange credentials; a secret never appears in a response."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class Exchange(StrEnum):
    binance = "binance"


# Visible ASCII without spaces: what exchanges issue, and nothing that could smuggle a header.
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]+$")


class CredentialPut(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"api_key": "<your binance api key>", "api_secret": "<secret>"}]
        },
    )

    api_key: SecretStr = Field(min_length=8, max_length=512)
    api_secret: SecretStr = Field(min_length=8, max_length=512)
    testnet: bool = False

    @field_validator("api_key", "api_secret")
    @classmethod
    def _visible_ascii(cls, value: SecretStr) -> SecretStr:
        if not _KEY_PATTERN.match(value.get_secret_value()):
            raise ValueError("must be visible ASCII characters without spaces")
        return value

    def plain(self) -> tuple[str, str]:
        return self.api_key.get_secret_value(), self.api_secret.get_secret_value()


class CredentialOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "exchange": "binance",
                    "testnet": False,
                    "api_key_last4": "x7Qa",
                    "created_at": "2026-01-15T09:40:00Z",
                    "updated_at": "2026-01-15T09:40:00Z",
                }
            ]
        },
    )

    exchange: Exchange
    testnet: bool
    api_key_last4: str
    created_at: datetime
    updated_at: datetime
