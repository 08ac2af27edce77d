"""One served decision recomputed from what it names: its candle window against the klines,
no look-ahead, its indicators (TA-Lib, the live code) and its ensemble outcome (the pure rule
of its recorded version). Each check returns why it fails, or None.

Indicator readings are floats: recomputed ones must be within READING_TOLERANCE of those
recorded (which are rounded to 6 places), the indicator score within SCORE_TOLERANCE (one unit
of its last place), so a verifier on another platform's floating point still agrees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from app.bots.strategy import Indicator
from app.trading.candles import Candle
from app.trading.ensemble import Action, Ballot, UnknownRule, apply_rule, ensemble_of
from app.trading.indicators import indicator_score
from app.verification.canonical import candles_digest

READING_ABS_TOLERANCE = 1e-6
READING_REL_TOLERANCE = 1e-9
SCORE_TOLERANCE = Decimal("0.0001")
READING_TOLERANCE = f"{READING_ABS_TOLERANCE:g} + {READING_REL_TOLERANCE:g} x |value|"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def window_opens(record: dict[str, Any], step: timedelta) -> list[datetime] | str:
    """The open times of the candles the decision names, or why they cannot be right: the
    window must end at the decided candle, be consecutive, and have closed at decision time."""
    window = record["candles"]
    if window is None:
        return "the decision does not name the candles it saw"
    first, last = parse_time(window["first_open_at"]), parse_time(window["last_open_at"])
    if last != parse_time(record["candle_open_at"]):
        return f"its window ends at {window['last_open_at']}, not at the decided candle"
    if window["count"] < 1 or first + (window["count"] - 1) * step != last:
        return f"its window of {window['count']} candles does not run from {first} to {last}"
    decided_at = parse_time(record["decided_at"])
    if last + step > decided_at:
        return (
            f"look-ahead: it saw the candle opening at {window['last_open_at']}, which had not "
            f"closed at its decision time {record['decided_at']}"
        )
    return [first + n * step for n in range(window["count"])]


def candles_mismatch(record: dict[str, Any], candles: Sequence[Candle]) -> str | None:
    decided_at = parse_time(record["decided_at"])
    late = [c for c in candles if c.close_time >= decided_at]
    if late:
        return (
            f"look-ahead: the exchange closes the candle of {late[0].open_time} after its decision"
        )
    if candles_digest(candles) != record["candles"]["sha256"]:
        return "its candle digest is not the SHA-256 of the exchange's klines for its window"
    return None


def _close(recorded: Any, recomputed: Any) -> bool:
    if recorded is None or recomputed is None:
        return recorded is recomputed
    return math.isclose(
        float(recorded),
        float(recomputed),
        rel_tol=READING_REL_TOLERANCE,
        abs_tol=READING_ABS_TOLERANCE,
    )


def indicators_mismatch(record: dict[str, Any], candles: Sequence[Candle]) -> str | None:
    """The recorded snapshot and indicator score against TA-Lib's on the same candles, with
    the periods and weights the snapshot records."""
    recorded: dict[str, dict[str, Any]] = record["indicators"]
    try:
        config = {
            name: Indicator(weight=Decimal(reading["weight"]), period=reading["period"])
            for name, reading in recorded.items()
        }
        result = indicator_score(candles, config)  # type: ignore[arg-type]
    except (KeyError, ValidationError, ValueError, InvalidOperation) as exc:
        return f"its indicators cannot be recomputed: {exc}"
    for name, reading in recorded.items():
        again = result.snapshot[name]
        for field in ("value", "signal", "contribution"):
            if not _close(reading.get(field), again[field]):
                return (
                    f"indicator {name} {field} is {reading.get(field)}, recomputed "
                    f"{again[field]} (tolerance {READING_TOLERANCE})"
                )
    if abs(Decimal(record["indicator_score"]) - result.score) > SCORE_TOLERANCE:
        return f"its indicator score is {record['indicator_score']}, recomputed {result.score}"
    return None


def _ballot(vote: dict[str, Any]) -> Ballot:
    action = Action(vote["action"]) if vote["action"] else None
    confidence = Decimal(vote["confidence"]) if vote["confidence"] is not None else Decimal(0)
    return Ballot(Decimal(vote["weight"]), action, confidence)


def ensemble_mismatch(record: dict[str, Any]) -> str | None:
    """The action and combined score from the recorded indicator score and votes, by the
    rule of the recorded version with the recorded parameters."""
    try:
        outcome = apply_rule(
            record["rule_version"],
            ensemble_of(record["rule_params"]),
            Decimal(record["indicator_score"]),
            [_ballot(vote) for vote in record["votes"]],
        )
    except (UnknownRule, ValidationError, ValueError, InvalidOperation) as exc:
        return f"its ensemble cannot be recomputed: {exc}"
    if (outcome.action.value, outcome.score) != (
        record["action"],
        Decimal(record["combined_score"]),
    ):
        return (
            f"its votes give {outcome.action.value} at {outcome.score} under "
            f"{record['rule_version']}, the record says {record['action']} at "
            f"{record['combined_score']}"
        )
    if outcome.reason and outcome.reason not in (record["fallback_reason"] or ""):
        return f"its fallback reason leaves out the rule's: {outcome.reason}"
    return None
