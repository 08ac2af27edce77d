from __future__ import annotations

from datetime import datetime

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from app.api_keys.authenticator import Scope


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "icp-marketplace", "scope": "marketplace"}]},
    )

    name: str = Field(min_length=1, max_length=100)
    scope: Scope
    owner: str | None = Field(
        default=None,
        max_length=32,
        description="id of the user this key acts as; a developer key without one gets a "
        "new developer user",
    )


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    scope: Scope
    prefix: str
    owner: str | None = Field(validation_alias=AliasChoices("owner_user_id", "owner"))
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key itself; shown only in this response")
