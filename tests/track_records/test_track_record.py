"""GET /api/v1/bots/{id}/track-record: per-mode aggregates of a bot's renters (a mode with
fewer than 3 renters suppressed), its decisions by action and its LLM cost per day (its
backtests are test_backtest_summaries.py's)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.models import Decision, LlmVote, PerformanceLog, Subscription, Trade
from app.track_records import repository
from tests.api.test_contract import assert_error, create_bot, listed_bot, subscribe
from tests.helpers import fake_binance_key, headers, new_principal

DAY = datetime(2026, 11, 20, tzinfo=UTC)
QUOTE = Decimal(100)
# Each paper subscription's hourly equity as a multiple of its starting capital, and what it
# gives: its return and its largest fall from a peak (from the capital on), in %.
PAPER_PATHS = [
    ["0.9"],  # -10 %, drawdown 10
    [],  # no equity point yet: 0 %, drawdown 0
    ["1.25", "1.04"],  # 4 %, drawdown 16.8
    ["1.08"],  # 8 %, drawdown 0
    ["0.8", "1.2"],  # 20 %, drawdown 20
    ["1.4"],  # 40 %, drawdown 0 (the same renter as the one before)
]


@dataclass
class Scenario:
    bot: dict
    # Everything that points at a renter and must never appear in a track record.
    private: list[str] = field(default_factory=list)


async def _add(app: FastAPI, *rows: object) -> None:
    async with app.state.runtime.sessionmaker() as session:
        session.add_all(rows)
        await session.commit()


async def _subscription(app: FastAPI, sub_id: str) -> Subscription:
    async with app.state.runtime.sessionmaker() as session:
        sub = await session.get(Subscription, sub_id)
        assert sub is not None
        return sub


def _equity_points(sub: Subscription, capital: Decimal, multiples: list[str]) -> list[object]:
    return [
        PerformanceLog(
            subscription_id=sub.id,
            recorded_at=DAY + timedelta(hours=hour),
            equity=capital * Decimal(multiple),
            realized_pnl=Decimal(0),
            unrealized_pnl=Decimal(0),
        )
        for hour, multiple in enumerate(multiples)
    ]


def _trade(sub: Subscription, status: str) -> Trade:
    return Trade(
        subscription_id=sub.id,
        client_order_id=f"t{secrets.token_hex(8)}",
        mode=sub.mode,
        symbol=sub.symbol,
        side="BUY",
        status=status,
        quantity=Decimal("0.001"),
        price=Decimal(50000),
    )


def _decision(version_id: str, candle: datetime, action: str, *costs: str) -> list[object]:
    decision = Decision(
        bot_version_id=version_id,
        symbol="BTCUSDT",
        timeframe="1h",
        candle_open_at=candle,
        indicators={},
        indicator_score=Decimal(0),
        combined_score=Decimal(0),
        action=action,
        rule_version="test",
        rule_params={},
    )
    decision.id = secrets.token_hex(16)
    votes = [
        LlmVote(
            decision_id=decision.id,
            provider=f"provider{i}",
            model="m",
            weight=Decimal(1),
            action=action,
            cost_usd=Decimal(cost),
        )
        for i, cost in enumerate(costs)
    ]
    return [decision, *votes]


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
    renters = [new_principal() for _ in range(5)]
    # Five paper renters, the last with two subscriptions (on two symbols).
    owners = [*renters, renters[-1]]
    symbols = ["BTCUSDT"] * 5 + ["ETHUSDT"]
    paper: list[Subscription] = []
    for principal, symbol, path in zip(owners, symbols, PAPER_PATHS, strict=True):
        response = await subscribe(
            client, marketplace_key, principal, bot["id"], symbol=symbol, quote_amount=str(QUOTE)
        )
        sub = await _subscription(app, response.json()["id"])
        paper.append(sub)
        await _add(app, *_equity_points(sub, capital, path))
    # A renter who left after a loss stays in the record.
    cancelled = await client.patch(
        f"/api/v1/subscriptions/{paper[0].id}",
        json={"status": "cancelled"},
        headers=headers(marketplace_key, renters[0]),
    )
    assert cancelled.status_code == 200, cancelled.text
    await _add(
        app,
        _trade(paper[0], "filled"),
        _trade(paper[2], "filled"),
        _trade(paper[2], "filled"),
        _trade(paper[3], "rejected"),
    )

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
        sub = await _subscription(app, response.json()["id"])
        await _add(app, *_equity_points(sub, capital / 2, ["1.3"]), _trade(sub, "filled"))
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
    await _add(
        app,
        # Outside the 30-day window of costs, inside the counts.
        *_decision(v1, DAY - timedelta(days=40), "BUY", "1"),
        *_decision(v1, yesterday, "BUY", "0.001", "0.0025"),
        *_decision(v1, yesterday + timedelta(hours=1), "HOLD"),
        *_decision(v1, yesterday + timedelta(hours=2), "HOLD", "0"),
        *_decision(v1, yesterday + timedelta(hours=3), "HOLD"),
        *_decision(v2, DAY, "SELL", "0.01"),
        *_decision(v2, DAY + timedelta(hours=1), "HOLD"),
    )
    # Another bot's decisions and renters count for that bot only.
    other = await listed_bot(client, developer_key)
    await _add(app, *_decision(other["version_id"], DAY, "BUY", "5"))
    await subscribe(client, marketplace_key, renters[0], other["id"])
    return scenario


async def test_the_track_record_aggregates_per_mode_and_suppresses_small_groups(
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
        "max_drawdown_pct_median": None,
        "trade_count": None,
    }
    assert response.json() == {
        "bot_id": scenario.bot["id"],
        "modes": {
            "paper": {
                "suppressed": False,
                "renters": 5,
                # Returns -10, 0, 4, 8, 20, 40, interpolated between the closest ranks.
                "return_pct": {"p25": "1", "median": "6", "p75": "17"},
                # Drawdowns 0, 0, 0, 10, 16.8, 20.
                "max_drawdown_pct_median": "5",
                "trade_count": 3,
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
    assert len(scenario.private) == 12 + 5 + 12 + 2
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
