"""GET /api/v1/bots/{id}/track-record: renters' results per mode as banded counts (a mode
with fewer than TRACK_RECORD_MIN_RENTERS renters with a fill suppressed), the bot's decisions
by action and its LLM cost per day (its backtests are test_backtest_summaries.py's, what an
attacker can learn of a renter test_privacy.py's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.track_records import repository
from tests.api.test_contract import assert_error, create_bot, listed_bot, subscribe
from tests.helpers import fake_binance_key, headers, new_principal
from tests.track_records.rows import DAY, add, decision, equity_points, subscription, trade

QUOTE = Decimal(100)
# Each paper subscription's hourly equity as a multiple of its starting capital, and its fills.
# Renter by renter (the fifth has two subscriptions, on two symbols): return, drawdown, fills.
PAPER = [
    (["0.9"], 1),  # -10 %, drawdown 10, 1 fill
    ([], 1),  # no equity point yet: 0 %, drawdown 0, 1 fill
    (["1.25", "1.04"], 2),  # 4 %, drawdown 16.8, 2 fills
    (["1.08"], 1),  # 8 %, drawdown 0, 1 fill
    (["0.8", "1.2"], 1),  # the fifth: (20 + 40) / 2 = 30 %, drawdown 20, 1 + 3 fills
    (["1.4"], 3),
    (["1.3"], 1),  # 30 %, drawdown 0, 1 fill
    (["0.5"], 0),  # no fill: not counted, whatever its equity
]


@dataclass
class Scenario:
    bot: dict
    # Everything that points at a renter and must never appear in a track record.
    private: list[str] = field(default_factory=list)


@pytest.fixture
async def scenario(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    settings: Settings,
) -> Scenario:
    capital = QUOTE * settings.paper_wallet_multiple
    bot = await listed_bot(client, developer_key)
    scenario = Scenario(bot=bot)
    renters = [new_principal() for _ in range(7)]
    owners = [*renters[:5], renters[4], *renters[5:]]
    symbols = ["BTCUSDT"] * 5 + ["ETHUSDT"] + ["BTCUSDT"] * 2
    paper = []
    for principal, symbol, (path, fills) in zip(owners, symbols, PAPER, strict=True):
        response = await subscribe(
            client, marketplace_key, principal, bot["id"], symbol=symbol, quote_amount=str(QUOTE)
        )
        sub = await subscription(app, response.json()["id"])
        paper.append(sub)
        await add(app, *equity_points(sub, capital, path), *(trade(sub) for _ in range(fills)))
    # A renter who left after a loss stays in the record; orders that did not fill count for
    # nothing.
    cancelled = await client.patch(
        f"/api/v1/subscriptions/{paper[0].id}",
        json={"status": "cancelled"},
        headers=headers(marketplace_key, renters[0]),
    )
    assert cancelled.status_code == 200, cancelled.text
    await add(app, trade(paper[3], "rejected"), trade(paper[-1], "rejected"))

    # Two testnet renters: too few to be shown.
    for _ in range(2):
        principal = new_principal()
        api_key, api_secret = fake_binance_key()
        stored = await client.put(
            "/api/v1/credentials/binance",
            json={"api_key": api_key, "api_secret": api_secret, "testnet": True},
            headers=headers(marketplace_key, principal),
        )
        assert stored.status_code in (200, 201), stored.text
        response = await subscribe(
            client, marketplace_key, principal, bot["id"], mode="testnet", quote_amount="50"
        )
        sub = await subscription(app, response.json()["id"])
        await add(app, *equity_points(sub, capital / 2, ["1.3"]), trade(sub))
        scenario.private += [
            principal,
            sub.id,
            sub.user_id,
            sub.credential_id,
            api_key[:-4],
            api_secret[:-4],
        ]
    scenario.private += renters + [s.id for s in paper] + [s.user_id for s in paper]
    scenario.private += [key.split("_")[1] for key in (developer_key, marketplace_key)]

    # Decisions of two versions: the second made by a change of strategy.
    changed = await client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={"strategy": {"ensemble": {"threshold": "0.4"}}},
        headers=headers(developer_key),
    )
    assert changed.json()["version"] == 2
    v1, v2 = bot["version_id"], changed.json()["version_id"]
    yesterday = DAY - timedelta(days=1)
    await add(
        app,
        # Outside the 30-day window of costs, inside the counts.
        *decision(v1, DAY - timedelta(days=40), "BUY", "1"),
        *decision(v1, yesterday, "BUY", "0.001", "0.0025"),
        *decision(v1, yesterday + timedelta(hours=1), "HOLD"),
        *decision(v1, yesterday + timedelta(hours=2), "HOLD", "0"),
        *decision(v1, yesterday + timedelta(hours=3), "HOLD"),
        *decision(v2, DAY, "SELL", "0.01"),
        *decision(v2, DAY + timedelta(hours=1), "HOLD"),
    )
    # Another bot's decisions and renters count for that bot only.
    other = await listed_bot(client, developer_key)
    await add(app, *decision(other["version_id"], DAY, "BUY", "5"))
    await subscribe(client, marketplace_key, renters[0], other["id"])
    return scenario


async def test_the_track_record_counts_renters_per_band_and_suppresses_small_groups(
    client: httpx.AsyncClient, marketplace_key: str, scenario: Scenario
) -> None:
    response = await client.get(
        f"/api/v1/bots/{scenario.bot['id']}/track-record", headers=headers(marketplace_key)
    )
    assert response.status_code == 200, response.text
    suppressed = {
        "suppressed": True,
        "renters": None,
        "return_pct": None,
        "max_drawdown_pct": None,
        "fills": None,
    }
    body = response.json()
    # Decision quality and the paper-to-live gap are test_decision_quality.py's.
    del body["quality"], body["paper_to_live"]
    assert body == {
        "bot_id": scenario.bot["id"],
        "modes": {
            "paper": {
                "suppressed": False,
                "renters": 6,
                # Returns -10, 0, 4 | 8, 30, 30: bands of fewer than 3 merged upwards.
                "return_pct": [
                    {"low": None, "high": "5", "renters": 3},
                    {"low": "5", "high": None, "renters": 3},
                ],
                # Drawdowns 0, 0, 0 | 10, 16.8, 20.
                "max_drawdown_pct": [
                    {"low": "0", "high": "5", "renters": 3},
                    {"low": "5", "high": "25", "renters": 3},
                ],
                # Fills 1, 1, 2, 1, 4, 1.
                "fills": [{"low": 1, "high": 5, "renters": 6}],
            },
            "testnet": suppressed,
            "live": suppressed,
        },
        "decisions": {"BUY": 2, "SELL": 1, "HOLD": 4},
        "llm_cost_per_day": [
            {"day": "2026-11-19", "cost_usd": "0.0035"},
            {"day": "2026-11-20", "cost_usd": "0.01"},
        ],
        "backtests": [],
    }
    # Stable key order, as the canister's replicas compare bytes.
    assert list(response.json()) == [
        "bot_id",
        "modes",
        "decisions",
        "quality",
        "paper_to_live",
        "llm_cost_per_day",
        "backtests",
    ]
    assert list(response.json()["modes"]) == ["paper", "testnet", "live"]


async def test_no_renter_can_be_found_in_the_body(
    client: httpx.AsyncClient, marketplace_key: str, scenario: Scenario
) -> None:
    body = (
        await client.get(
            f"/api/v1/bots/{scenario.bot['id']}/track-record", headers=headers(marketplace_key)
        )
    ).text
    assert len(scenario.private) == 12 + 7 + 16 + 2
    leaked = [value for value in scenario.private if value in body]
    assert leaked == []


async def test_every_scope_reads_the_same_bytes(
    client: httpx.AsyncClient,
    admin_key: str,
    developer_key: str,
    marketplace_key: str,
    scenario: Scenario,
) -> None:
    url = f"/api/v1/bots/{scenario.bot['id']}/track-record"
    bodies = set()
    # A marketplace key needs no principal here; replicas of one outcall, twice each.
    for key in (admin_key, developer_key, marketplace_key, marketplace_key):
        response = await client.get(url, headers=headers(key))
        assert response.status_code == 200, response.text
        bodies.add(response.content)
    assert len(bodies) == 1


async def test_equity_streamed_in_small_batches_gives_the_same_record(
    client: httpx.AsyncClient,
    marketplace_key: str,
    scenario: Scenario,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"/api/v1/bots/{scenario.bot['id']}/track-record"
    whole = (await client.get(url, headers=headers(marketplace_key))).content
    # One row per batch: every subscription's path crosses batch boundaries.
    monkeypatch.setattr(repository, "_EQUITY_BATCH", 1)
    assert (await client.get(url, headers=headers(marketplace_key))).content == whole


async def test_a_bot_without_renters_or_decisions(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    bot = await create_bot(client, developer_key)
    body = (
        await client.get(f"/api/v1/bots/{bot['id']}/track-record", headers=headers(developer_key))
    ).json()
    assert {mode: record["suppressed"] for mode, record in body["modes"].items()} == {
        "paper": True,
        "testnet": True,
        "live": True,
    }
    assert body["decisions"] == {"BUY": 0, "SELL": 0, "HOLD": 0}
    assert body["llm_cost_per_day"] == []
    assert body["backtests"] == []


async def test_unknown_bot_and_missing_key(client: httpx.AsyncClient, admin_key: str) -> None:
    url = f"/api/v1/bots/{'0' * 32}/track-record"
    assert_error(await client.get(url, headers=headers(admin_key)), 404, "NOT_FOUND")
    assert_error(await client.get(url), 401, "UNAUTHENTICATED")
