"""Prometheus metrics of webhook deliveries; by result only: endpoints belong to renters and
are never a label."""

from __future__ import annotations

from prometheus_client import Counter

from app.webhooks.service import Outcome

DELIVERIES = Counter(
    "botmarket_webhook_deliveries",
    "Webhook delivery attempts by result: delivered (2xx) or failed",
    ["result"],
)


def counted(outcome: Outcome) -> Outcome:
    DELIVERIES.labels("delivered" if outcome.delivered else "failed").inc()
    return outcome
