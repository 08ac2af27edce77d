"""The fixed, versioned prompt every voter gets. A change of wording is a new version."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from app.integrations.llm.base import MAX_REASONING, VotePrompt

PROMPT_VERSION = "vote-v1"

SYSTEM = f"""You are one voter on a panel that decides a spot trade for one closed candle.
Answer only with JSON: {{"action": "BUY" | "SELL" | "HOLD", "confidence": 0..1,
"reasoning": at most {MAX_REASONING} characters, "cited_indicators": [names you relied on]}}.
BUY opens or adds to a long position, SELL closes it, HOLD does nothing. Judge only from the
data given; say HOLD with low confidence when it is unclear."""


def render(
    symbol: str,
    timeframe: str,
    candle_open_at: datetime,
    indicators: dict[str, dict[str, object]],
    closes: Sequence[str],
) -> VotePrompt:
    """`closes`: the recent closing prices, oldest first, as exact decimal strings."""
    user = "\n".join(
        [
            f"Market: {symbol}, timeframe {timeframe}, candle opened {candle_open_at.isoformat()}.",
            "Indicators (value; signal in [-1, 1], + favours buying; weight):",
            json.dumps(indicators, sort_keys=True, separators=(",", ":")),
            f"Last {len(closes)} closes, oldest first: {', '.join(closes)}",
            "Your vote:",
        ]
    )
    return VotePrompt(system=SYSTEM, user=user)
