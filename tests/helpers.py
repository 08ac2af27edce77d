"""Small request helpers shared by the API tests."""

from __future__ import annotations

import secrets

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
