"""The track record's decision quality (per version and voter, against the next stored
candle, over the last 30 days and since listing) and its paper-to-live gap (behind the renter
threshold, as quantile bands)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from app.models import BotMarketplaceRegistration, Candle, Decision, LlmVote
from app.trading.ensemble import RULE_VERSION
from tests.api.test_contract import listed_bot, store_credentials, subscribe
from tests.helpers import headers, new_principal
from tests.track_records.conftest import MIN_RENTERS
from tests.track_records.rows import DAY, add, subscription, trade

HOUR = timedelta(hours=1)
# Closes of the stored candles from DAY on, hour by hour: next-candle returns +10 %, -10 %,
# 0 %, +21.2121 %; the fifth decision's next candle is not stored.
CLOSES = ["100", "110", "99", "99", "120"]
# Per hour: the ensemble's action, the indicator score (its rule alone: BUY at 0.25 and up,
# SELL at -0.25 and down) and the two voters' answers (None: abstained).
DECISIONS = [
    ("BUY", "0.3", "BUY", None),
    ("SELL", "0.1", "SELL", "BUY"),
    ("BUY", "-0.3", "HOLD", "BUY"),
    ("HOLD", "0", None, "SELL"),
    ("BUY", "0.5", "BUY", ""),  # "": the second voter was not asked
]


def _candle(hour: int, close: str) -> Candle:
    price = Decimal(close)
    return Candle(
        symbol="BTCUSDT",
        timeframe="1h",
        open_time=DAY + hour * HOUR,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=Decimal(1),
        close_time=DAY + (hour + 1) * HOUR - timedelta(milliseconds=1),
    )


def _decision(version_id: str, hour: int, action: str, score: str, *answers: str | None) -> list:
    decision = Decision(
        bot_version_id=version_id,
        symbol="BTCUSDT",
        timeframe="1h",
        candle_open_at=DAY + hour * HOUR,
        indicators={},
        indicator_score=Decimal(score),
        combined_score=Decimal(0),
        action=action,
        rule_version=RULE_VERSION,
        rule_params={"threshold": "0.25", "indicator_weight": "1", "voters_configured": 2},
    )
    decision.id = f"{version_id[:24]}{hour + 100:08d}"
    votes = [
        LlmVote(
            decision_id=decision.id,
            seat=seat,
            provider=provider,
            model="m1",
            weight=Decimal(1),
            action=answer,
            abstain_reason=None if answer else "timeout",
        )
        for seat, (provider, answer) in enumerate(zip(("alpha", "beta"), answers, strict=True))
        if answer != ""
    ]
    return [decision, *votes]


def _calls(scored: int, hit_rate: str | None, holds: int, directional: str) -> dict:
    return {
        "scored": scored,
        "hit_rate": hit_rate,
        "holds": holds,
        "directional_return_pct": directional,
    }


async def test_decision_quality_per_version_and_voter(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str
) -> None:
    bot = await listed_bot(client, developer_key)
    version_id = bot["version_id"]
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(
            update(BotMarketplaceRegistration)
            .where(BotMarketplaceRegistration.bot_id == bot["id"])
            .values(created_at=DAY - timedelta(days=50))
        )
        await session.commit()
    rows: list = [_candle(hour, close) for hour, close in enumerate(CLOSES)]
    for hour, (action, score, *answers) in enumerate(DECISIONS):
        rows += _decision(version_id, hour, action, score, *answers)
    # Since listing, not in the last 30 days: a HOLD without votes or candles. Before listing:
    # counted nowhere.
    rows += _decision(version_id, -40 * 24, "HOLD", "0", "", "")
    rows += _decision(version_id, -60 * 24, "BUY", "0.9", "BUY", "BUY")
    await add(app, *rows)

    body = (
        await client.get(f"/api/v1/bots/{bot['id']}/track-record", headers=headers(developer_key))
    ).json()
    recent = {
        "decisions": 5,
        # 2 of 9 votes abstained; 4 of the 7 answers equal the ensemble's action.
        "abstention_rate": "0.2222",
        "agreement_rate": "0.5714",
        # BUY +10 right, SELL -10 right, BUY 0 wrong; one HOLD; the last BUY not scored.
        "ensemble": _calls(3, "0.6667", 1, "20"),
        # BUY +10 right, SELL on 0 wrong; two HOLDs.
        "indicators_only": _calls(2, "0.5", 2, "10"),
        "buy_and_hold_return_pct": "21.2121",
    }
    assert body["quality"]["versions"] == [
        {
            "version": 1,
            "last_30_days": recent,
            # And one more HOLD, of the ensemble and of the indicators alone.
            "since_listing": {
                **recent,
                "decisions": 6,
                "ensemble": _calls(3, "0.6667", 2, "20"),
                "indicators_only": _calls(2, "0.5", 3, "10"),
            },
        }
    ]
    alpha = {
        "decisions": 5,
        "abstention_rate": "0.2",
        "agreement_rate": "0.75",
        "calls": _calls(2, "1", 1, "20"),
    }
    beta = {
        "decisions": 4,
        "abstention_rate": "0.25",
        "agreement_rate": "0.3333",
        # BUY on -10, BUY on 0 and SELL on +21.2121: all wrong.
        "calls": _calls(3, "0", 0, "-31.2121"),
    }
    assert body["quality"]["voters"] == [
        {"provider": "alpha", "model": "m1", "last_30_days": alpha, "since_listing": alpha},
        {"provider": "beta", "model": "m1", "last_30_days": beta, "since_listing": beta},
    ]


async def test_the_paper_to_live_gap_needs_enough_renters(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    bot = await listed_bot(client, developer_key)
    await add(app, *_decision(bot["version_id"], 0, "BUY", "0.3", "", ""))
    decision_id = f"{bot['version_id'][:24]}{100:08d}"

    async def filled(mode: str, price: str) -> None:
        principal = new_principal()
        if mode != "paper":
            stored = await store_credentials(client, marketplace_key, principal, testnet=True)
            assert stored.status_code in (200, 201), stored.text
        response = await subscribe(client, marketplace_key, principal, bot["id"], mode=mode)
        assert response.status_code == 201, response.text
        sub = await subscription(app, response.json()["id"])
        quote = Decimal(100)
        fill = trade(
            sub,
            decision_id=decision_id,
            quote_quantity=quote,
            fee=quote / 1000,
            fee_asset="USDT",
        )
        fill.price = Decimal(price)
        await add(app, fill)

    url = f"/api/v1/bots/{bot['id']}/track-record"
    await filled("paper", "100")
    # Live minus paper: 2, 3, 4, 7 and 30 basis points worse; the same fee (10 bps).
    for price in ("100.02", "100.03", "100.04", "100.07"):
        await filled("testnet", price)
    gap = (await client.get(url, headers=headers(developer_key))).json()["paper_to_live"]
    assert gap == {"suppressed": True, "price_bps": None, "fee_bps": None}
    await filled("testnet", "100.3")
    gap = (await client.get(url, headers=headers(developer_key))).json()["paper_to_live"]
    zero = {"low": "0", "high": "5"}
    assert gap == {
        "suppressed": False,
        # Nearest rank: the median is the 3rd of 5 (4 bps), the 90th percentile the 5th (30).
        "price_bps": {"median": zero, "p90": {"low": "25", "high": "50"}},
        "fee_bps": {"median": zero, "p90": zero},
    }
    assert MIN_RENTERS == 5
