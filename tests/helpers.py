"""Small helpers shared by the tests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.core.principals import encode_principal


def new_principal() -> str:
    return encode_principal(secrets.token_bytes(10))


def headers(
    key: str, principal: str | None = None, idempotency_key: str | None = None
) -> dict[str, str]:
    result = {"X-API-Key": key}
    if principal is not None:
        result["X-Principal-ID"] = principal
    if idempotency_key is not None:
        result["Idempotency-Key"] = idempotency_key
    return result


def fake_binance_key() -> tuple[str, str]:
    """Random key material shaped like Binance's (64 alphanumerics); never a real key."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    make = lambda: "".join(secrets.choice(alphabet) for _ in range(64))  # noqa: E731
    return make(), make()


@dataclass
class Clock:
    """Time as the executor sees it, moved by the test (leases, decision freshness)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @classmethod
    def real(cls) -> Clock:
        return cls(datetime.now(UTC))
