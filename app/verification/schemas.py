"""The API bodies of the decision chains: a chained decision as served (what its hash is
taken over, plus the hash), a page of them, the signed head and the signing keys.

Decimals are strings in one spelling and times UTC strings, exactly as app/verification/
canonical.py writes them: a verifier hashes the served JSON as it reads it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

_EXAMPLE_BOT_ID = "0193b6c4a1b2c3d4e5f60718293a4b5c"
_HASH = Field(pattern=r"^[0-9a-f]{64}$")
_TIME = Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$")
_DECIMAL = Field(pattern=r"^-?[0-9]+(\.[0-9]*[1-9])?$")


class CandleWindow(BaseModel):
    """The consecutive closed candles the decision saw, the last being the decided one."""

    count: int
    first_open_at: str = _TIME
    last_open_at: str = _TIME
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the canonical candle list (docs/verification.md)",
    )


class ChainedVote(BaseModel):
    seat: int
    provider: str
    model: str
    weight: str = _DECIMAL
    prompt_sha256: str | None = Field(description="SHA-256 of the canonical prompt it was sent")
    response_text: str | None = Field(description="what the model answered; null: no answer")
    action: Literal["BUY", "SELL", "HOLD"] | None
    confidence: str | None = _DECIMAL
    reasoning: str | None
    cited_indicators: list[str]
    abstain_reason: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: str = _DECIMAL
    latency_ms: int


_EXAMPLE_VOTE: JsonDict = {
    "seat": 0,
    "provider": "openai",
    "model": "gpt-4o-mini",
    "weight": "1",
    "prompt_sha256": "5d1f" + "0" * 60,
    "response_text": '{"action":"BUY","confidence":0.7,"reasoning":"RSI recovering",'
    '"cited_indicators":["rsi"]}',
    "action": "BUY",
    "confidence": "0.7",
    "reasoning": "RSI recovering",
    "cited_indicators": ["rsi"],
    "abstain_reason": None,
    "tokens_in": 512,
    "tokens_out": 40,
    "cost_usd": "0.0001008",
    "latency_ms": 830,
}


class ChainedDecision(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bot_id": _EXAMPLE_BOT_ID,
                    "seq": 2,
                    "prev_hash": "9c1e" + "0" * 60,
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
                        "sha256": "77ab" + "0" * 60,
                    },
                    "indicators": {
                        "rsi": {
                            "period": 14,
                            "value": 38.2,
                            "signal": 0.59,
                            "weight": "1",
                            "contribution": 0.59,
                        }
                    },
                    "indicator_score": "0.59",
                    "combined_score": "0.645",
                    "action": "BUY",
                    "rule_version": "ensemble-v1",
                    "rule_params": {"threshold": "0.25", "quorum": 1, "fallback": "hold"},
                    "fallback_reason": None,
                    "votes": [_EXAMPLE_VOTE],
                    "hash": "3f0a" + "0" * 60,
                }
            ]
        }
    )

    bot_id: str
    seq: int = Field(ge=1)
    prev_hash: str = _HASH
    decision_id: str
    bot_version_id: str
    symbol: str
    timeframe: str
    candle_open_at: str = _TIME
    decided_at: str = _TIME
    candles: CandleWindow | None
    indicators: dict[str, Any]
    indicator_score: str = _DECIMAL
    combined_score: str = _DECIMAL
    action: Literal["BUY", "SELL", "HOLD"]
    rule_version: str
    rule_params: dict[str, Any]
    fallback_reason: str | None
    votes: list[ChainedVote]
    hash: str = _HASH


class ChainPage(BaseModel):
    items: list[ChainedDecision]
    next_after: int | None = Field(
        description="the `after` of the next page; null on the last page", examples=[50]
    )


class ChainHeadOut(BaseModel):
    """The bot's latest link, signed when it was appended; seq 0 (and no signature) before
    its first decision."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bot_id": _EXAMPLE_BOT_ID,
                    "seq": 2,
                    "hash": "3f0a" + "0" * 60,
                    "signed_at": "2026-01-15T11:00:01.210004Z",
                    "key_id": "k2026",
                    "signature": "base64 of the 64-byte Ed25519 signature",
                }
            ]
        }
    )

    bot_id: str
    seq: int = Field(ge=0)
    hash: str = _HASH
    signed_at: str | None = _TIME
    key_id: str | None
    signature: str | None = Field(description="base64 Ed25519 signature of the head message")


class SigningKeyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key_id": "k2026",
                    "algorithm": "Ed25519",
                    "public_key": "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
                    "status": "current",
                }
            ]
        }
    )

    key_id: str
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key: str = Field(description="base64 of the raw 32-byte public key")
    status: Literal["current", "retired"] = Field(
        description="current: signs new heads; retired: verifies the heads it signed before "
        "a rotation"
    )


class SigningKeysOut(BaseModel):
    keys: list[SigningKeyOut]
