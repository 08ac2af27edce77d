"""The worked example of docs/verification.md, computed here so that the document cannot
drift from the code: the test reads the values it asserts from the document itself."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.verification.canonical import (
    GENESIS_HASH,
    canonical,
    chain_hash,
    decimal_text,
    head_message,
    time_text,
)

DOC = Path(__file__).parents[2] / "docs" / "verification.md"

RECORD = {
    "bot_id": "0193b6c4a1b2c3d4e5f60718293a4b5c",
    "seq": 1,
    "prev_hash": GENESIS_HASH,
    "decision_id": "0193b6cfe0f1a2b3c4d5e6f708192a3b",
    "bot_version_id": "0193b6c4a1b2c3d4e5f60718293a4b5d",
    "symbol": "BTCUSDT",
    "timeframe": "1h",
    "candle_open_at": "2026-01-15T10:00:00Z",
    "decided_at": "2026-01-15T11:00:01.204512Z",
    "candles": {
        "count": 100,
        "first_open_at": "2026-01-11T07:00:00Z",
        "last_open_at": "2026-01-15T10:00:00Z",
        "sha256": "9f2d6ab0d4cb1b3e0f7f1cc1b1e7a2f4c1d0e6b5a4f3e2d1c0b9a8f7e6d5c4b3",
    },
    "indicators": {
        "rsi": {"period": 14, "value": 38.2, "signal": 0.59, "weight": "1", "contribution": 0.59}
    },
    "indicator_score": "0.59",
    "combined_score": "0.695",
    "action": "BUY",
    "rule_version": "ensemble-v1",
    "rule_params": {"threshold": "0.25", "quorum": 1, "fallback": "hold"},
    "fallback_reason": None,
    "votes": [
        {
            "seat": 0,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "weight": "1",
            "prompt_sha256": "5d1fe1c5d0c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a2",
            "response_text": '{"action":"BUY","confidence":0.8}',
            "action": "BUY",
            "confidence": "0.8",
            "reasoning": "RSI recovering",
            "cited_indicators": ["rsi"],
            "abstain_reason": None,
            "tokens_in": 512,
            "tokens_out": 40,
            "cost_usd": "0.0001008",
            "latency_ms": 830,
        }
    ],
}
SIGNED_AT = datetime(2026, 1, 15, 11, 0, 1, 210004, tzinfo=UTC)


def documented(name: str) -> str:
    """The block of docs/verification.md that follows the marker `<!-- name -->`."""
    found = re.search(rf"<!-- {name} -->\n```[a-z]*\n(.*?)\n```", DOC.read_text(), re.DOTALL)
    assert found, f"docs/verification.md has no block marked {name}"
    return found.group(1)


def test_the_documented_canonical_form_hash_and_head_message() -> None:
    assert canonical(RECORD).decode() == documented("canonical")
    digest = chain_hash(GENESIS_HASH, RECORD)
    assert digest == documented("hash")
    message = head_message(RECORD["bot_id"], 1, digest, SIGNED_AT)  # type: ignore[arg-type]
    assert message.decode() == documented("head-message")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.500000000000000000"), "0.5"),
        (Decimal("1.25E+3"), "1250"),
        (Decimal("-0.0000"), "0"),
        (Decimal("0.00000001"), "0.00000001"),
    ],
)
def test_decimals_have_one_spelling(value: Decimal, text: str) -> None:
    assert decimal_text(value) == text


def test_times_are_utc_with_microseconds_only_when_there_are_any() -> None:
    assert time_text(datetime(2026, 1, 15, 10, tzinfo=UTC)) == "2026-01-15T10:00:00Z"
    assert time_text(SIGNED_AT) == "2026-01-15T11:00:01.210004Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        time_text(datetime(2026, 1, 15, 10))  # a naive time
