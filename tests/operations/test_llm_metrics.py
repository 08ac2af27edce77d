"""The LLM panel's metrics move when a live decision asks, or cannot ask for want of budget."""

from __future__ import annotations

import httpx

from app.trading.decide import DecisionMaker
from tests.bots.test_llm_cost_rules import (  # noqa: F401 - fixtures
    LOCAL,
    NOW,
    api,
    created,
    llm_app,
    llm_settings,
)
from tests.bots.test_llm_cost_rules import (
    client as client,
)
from tests.bots.test_llm_cost_rules import (
    maker as maker,
)
from tests.operations.conftest import sample


async def test_a_decision_counts_its_votes_and_their_cost_by_provider_and_bot(
    client: httpx.AsyncClient, developer_key: str, maker: DecisionMaker
) -> None:
    voter = {"provider": "openai", "model": "gpt-4o-mini"}
    bot = await created(client, developer_key, voters=[voter], llm_daily_budget_usd="1")
    labels = {"provider": "openai", "bot": bot["id"]}
    votes_before = sample("botmarket_llm_votes_total", provider="openai", outcome="vote")
    await maker.decide(bot["version_id"], "BTCUSDT", "1h", now=NOW)
    # 120 tokens in, 40 out at gpt-4o-mini's 0.15 / 0.60 USD per million.
    assert sample("botmarket_llm_cost_usd_total", **labels) == 0.000042
    assert sample("botmarket_llm_votes_total", provider="openai", outcome="vote") == (
        votes_before + 1
    )


async def test_a_bot_out_of_budget_is_counted_once_a_day(
    client: httpx.AsyncClient, developer_key: str, maker: DecisionMaker
) -> None:
    bot = await created(client, developer_key, voters=[LOCAL], llm_daily_budget_usd="0")
    before = sample("botmarket_llm_budget_exhausted_total")
    await maker.decide(bot["version_id"], "BTCUSDT", "1h", now=NOW)
    assert sample("botmarket_llm_budget_exhausted_total") == before + 1
    await maker.decide(bot["version_id"], "ETHUSDT", "1h", now=NOW)  # the same budget day
    assert sample("botmarket_llm_budget_exhausted_total") == before + 1
