"""Prometheus metrics of the Binance rate-limit governor: the weight Binance says is spent in
its current minute, and the 429/418 answers that stop every call of the deployment."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

# The latest answer of any process counts: every process shares the same per-IP budget.
USED_WEIGHT = Gauge(
    "botmarket_binance_used_weight",
    "Request weight Binance reports spent in its current minute (X-MBX-USED-WEIGHT-1M)",
    multiprocess_mode="mostrecent",
)
BANS = Counter(
    "botmarket_binance_bans",
    "Answers 429 or 418 from Binance: every call stopped for Retry-After seconds",
)
