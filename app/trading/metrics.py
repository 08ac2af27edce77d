"""Prometheus metrics of the trading engine, recorded where the work happens.

They live in the process's default registry; a worker's pool processes write them to files
that the worker's one listener sums (workers/metrics.py). The API keeps a registry of its own.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DECISIONS = Counter("botmarket_decisions", "Decisions made, by action", ["action"])
VOTES = Counter(
    "botmarket_llm_votes",
    "LLM answers by provider; outcome vote or abstain",
    ["provider", "outcome"],
)
LLM_LATENCY = Histogram(
    "botmarket_llm_latency_seconds",
    "LLM call latency by provider",
    ["provider"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30),
)
LLM_COST = Counter("botmarket_llm_cost_usd", "Estimated LLM spend by provider", ["provider"])
ORDERS = Counter("botmarket_orders", "Order attempts by mode and result", ["mode", "result"])
RISK_REFUSALS = Counter("botmarket_risk_refusals", "Orders refused by a risk limit", ["limit"])
TASK_DURATION = Histogram(
    "botmarket_task_duration_seconds",
    "Celery task durations",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 240),
)
