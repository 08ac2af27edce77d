"""Prometheus metrics of the bots domain."""

from __future__ import annotations

from prometheus_client import Counter

BUDGET_EXHAUSTED = Counter(
    "botmarket_llm_budget_exhausted",
    "Bot budget days on which a bot's daily LLM budget ran out (its decisions fell back to "
    "indicators)",
)
