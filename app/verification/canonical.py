"""The canonical form of a chained record, and the hashes and signed message built on it.

Pure functions, no database and no app imports: the writer that appends a decision to its
bot's chain and any verifier that recomputes the chain from the served JSON use exactly these.

    canonical(x)     RFC 8785 (JSON Canonicalization Scheme) of x, UTF-8 bytes; every decimal
                     is a string (decimal_text), every time a UTC string (time_text)
    chain hash       sha256_hex(prev_hash + "\\n" + canonical(record without "hash"))
                     with prev_hash = 64 zeros for seq 1
    head message     b"botmarket-chain-head-v1\\n" + canonical({bot_id, seq, hash, signed_at})
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import rfc8785

GENESIS_HASH = "0" * 64
HEAD_CONTEXT = b"botmarket-chain-head-v1\n"


class CandleLike(Protocol):
    @property
    def open_time(self) -> datetime: ...
    @property
    def open(self) -> Decimal: ...
    @property
    def high(self) -> Decimal: ...
    @property
    def low(self) -> Decimal: ...
    @property
    def close(self) -> Decimal: ...
    @property
    def volume(self) -> Decimal: ...


def decimal_text(value: Decimal) -> str:
    """One spelling per amount, whatever the source's scale: no exponent, no trailing zeros,
    and zero without a sign (MariaDB's NUMERIC gives back 0.000… for a stored -0)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def time_text(value: datetime) -> str:
    """UTC `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`: microseconds only when there are any."""
    if value.tzinfo is None:
        raise ValueError("a canonical time must be timezone-aware")
    utc = value.astimezone(UTC)
    fraction = f".{utc.microsecond:06d}" if utc.microsecond else ""
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def canonical(value: Any) -> bytes:
    return rfc8785.dumps(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chain_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """The hash of a record (its "hash" field, when present, left out) after `prev_hash`."""
    body = {name: value for name, value in record.items() if name != "hash"}
    return sha256_hex(prev_hash.encode() + b"\n" + canonical(body))


def candles_digest(candles: Iterable[CandleLike]) -> str:
    """SHA-256 of the canonical candle window: a list, oldest first, of
    {open_time, open, high, low, close, volume}."""
    return sha256_hex(
        canonical(
            [
                {
                    "open_time": time_text(c.open_time),
                    "open": decimal_text(c.open),
                    "high": decimal_text(c.high),
                    "low": decimal_text(c.low),
                    "close": decimal_text(c.close),
                    "volume": decimal_text(c.volume),
                }
                for c in candles
            ]
        )
    )


def prompt_digest(system: str, user: str) -> str:
    """SHA-256 of the canonical {system, user} prompt a voter was sent."""
    return sha256_hex(canonical({"system": system, "user": user}))


def head_message(bot_id: str, seq: int, hash_: str, signed_at: datetime) -> bytes:
    """What a chain head's Ed25519 signature is over."""
    return HEAD_CONTEXT + canonical(
        {"bot_id": bot_id, "seq": seq, "hash": hash_, "signed_at": time_text(signed_at)}
    )
