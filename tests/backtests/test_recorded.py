"""`recorded` mode replays what each live decision stored: its votes in seat order,
abstentions as abstentions, combined by the decision's own rule version and parameters, each
vote with its provenance; a live decision made on other candles than the replay's is counted
and its votes left out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.backtests.flows import BacktestFlows
from app.backtests.replay import ReplayState, result
from app.backtests.votes import RecordedVotes
from app.bots.strategy import Ensemble, Strategy
from app.models import BotVersion, Decision, LlmVote
from app.trading import ensemble
from app.trading.decide import DecisionMaker
from app.trading.ensemble import Action, Ballot, Outcome
from tests.backtests.conftest import make_bot, start
from tests.backtests.engine import market_candles, run, spec
from tests.fakes import DEFAULT_VOTE, RunningFakes
from tests.helpers import headers
from tests.trading import test_decide
from tests.trading.conftest import Queue

# The live decision's fixtures, as tests/trading/test_decide.py wires them.
maker = test_decide.maker
llm_settings = test_decide.llm_settings

HOUR = timedelta(hours=1)
SEATS = ["openai", "anthropic", "gemini"]  # test_decide.PANEL: not in provider order


async def live_decisions(
    app: FastAPI, maker: DecisionMaker, version: BotVersion, first: datetime, hours: int
) -> list[Decision]:
    """The live decisions of `hours` consecutive 1h candles, the first opening at `first`."""
    return [
        await maker.decide(version.id, "BTCUSDT", "1h", now=first + (n + 1) * HOUR)
        for n in range(hours)
    ]


async def stored_votes(app: FastAPI, decision: Decision) -> list[LlmVote]:
    async with app.state.runtime.sessionmaker() as session:
        rows = await session.scalars(
            select(LlmVote).where(LlmVote.decision_id == decision.id).order_by(LlmVote.seat)
        )
        return list(rows.all())


async def edited(app: FastAPI, decision: Decision, **values: Any) -> None:
    async with app.state.runtime.sessionmaker() as session:
        stored = await session.get(Decision, decision.id)
        assert stored is not None
        for name, value in values.items():
            setattr(stored, name, value)
        await session.commit()


async def replayed(
    app: FastAPI, version: BotVersion, live: Sequence[Decision]
) -> tuple[ReplayState, dict[str, Any]]:
    """A recorded backtest of exactly the live decisions' candles; its state and result."""
    replay = spec(
        Strategy.model_validate(version.strategy), start=live[0].candle_open_at, candles=len(live)
    )
    async with app.state.runtime.sessionmaker() as session:
        votes = await RecordedVotes.load(
            session, version.id, "BTCUSDT", "1h", replay.start, replay.end
        )
    candles = market_candles(replay)
    state = await run(replay, candles, votes)
    return state, result(replay, candles, state)


def seat_apart(fakes: RunningFakes) -> None:
    """Seat 0 sure, seat 1 abstaining (an answer that is not JSON), seat 2 less sure."""
    fakes.openai.reset(vote={**DEFAULT_VOTE, "confidence": 0.9})
    fakes.anthropic.reset(malformed="text")
    fakes.gemini.reset(vote={**DEFAULT_VOTE, "confidence": 0.6})


async def test_each_live_round_is_replayed_in_seat_order_with_its_provenance(
    app: FastAPI, maker: DecisionMaker, llm_fakes: RunningFakes
) -> None:
    seat_apart(llm_fakes)
    version = await test_decide.bot_version(app)
    live = await live_decisions(app, maker, version, datetime(2026, 11, 20, 8, tzinfo=UTC), 3)
    state, _ = await replayed(app, version, live)

    assert state.vote_sources == {"recorded": 3, "asked": 0, "none": 0}
    by_time = {d["time"]: d for d in state.decisions}
    traded = [d for d in live if d.action != "HOLD"]
    assert traded, "the fakes vote BUY: a live decision that trades keeps this test honest"
    assert state.holds == len(live) - len(traded)
    for decision in traded:
        mine = by_time[decision.candle_open_at.isoformat()]
        assert (mine["action"], Decimal(mine["score"])) == (
            decision.action,
            decision.combined_score,
        )
        assert (mine["live_decision_id"], mine["rule_version"]) == (
            decision.id,
            decision.rule_version,
        )
        stored = await stored_votes(app, decision)
        assert [v["provider"] for v in mine["votes"]] == [v.provider for v in stored] == SEATS
        assert [v["seat"] for v in mine["votes"]] == [0, 1, 2]
        assert [v["action"] for v in mine["votes"]] == ["BUY", None, "BUY"]
        assert [v["confidence"] for v in mine["votes"]] == ["0.9", None, "0.6"]
        assert mine["votes"][1]["abstain_reason"] == stored[1].abstain_reason is not None
        for shown, vote in zip(mine["votes"], stored, strict=True):
            assert (shown["model"], shown["prompt_sha256"], Decimal(shown["cost_usd"])) == (
                vote.model,
                vote.prompt_sha256,
                vote.cost_usd,
            )


def always_sell(
    indicator: Decimal, ballots: Sequence[Ballot], params: Ensemble, voters: int
) -> Outcome:
    return Outcome(Action.SELL, Decimal(-1), None)


async def test_each_decision_is_combined_by_its_own_rule_version_and_parameters(
    app: FastAPI, maker: DecisionMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = await test_decide.bot_version(app)
    live = await live_decisions(app, maker, version, datetime(2026, 11, 20, 8, tzinfo=UTC), 3)
    # A rule version of another release, and a decision recorded under other parameters.
    monkeypatch.setitem(ensemble.RULES, "ensemble-sells", always_sell)
    await edited(app, live[0], rule_version="ensemble-sells")
    await edited(app, live[1], rule_params={**live[1].rule_params, "threshold": "0.99"})
    state, _ = await replayed(app, version, live)

    shown = [(d["time"], d["action"], d["rule_version"]) for d in state.decisions]
    as_live = [] if live[2].action == "HOLD" else [live[2]]
    assert shown == [
        (live[0].candle_open_at.isoformat(), "SELL", "ensemble-sells"),
        *((d.candle_open_at.isoformat(), d.action, ensemble.RULE_VERSION) for d in as_live),
    ]
    assert state.holds == 1 + len(live) - 2 - len(as_live)  # the threshold it was decided under


async def test_a_live_decision_made_on_other_candles_is_counted_and_not_replayed(
    app: FastAPI, maker: DecisionMaker
) -> None:
    version = await test_decide.bot_version(app)
    live = await live_decisions(app, maker, version, datetime(2026, 11, 20, 8, tzinfo=UTC), 3)
    # The exchange served other candles then than the backtest reads now.
    await edited(app, live[1], candles_sha256="ab" * 32)
    state, outcome = await replayed(app, version, live)

    assert state.vote_sources == {"recorded": 2, "asked": 0, "none": 1}
    assert outcome["llm"]["window_mismatches"] == 1
    assert live[1].id not in {d["live_decision_id"] for d in state.decisions}


async def test_the_report_of_a_recorded_backtest_names_the_decisions_on_other_candles(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    maker: DecisionMaker,
    backtests: tuple[BacktestFlows, Queue],
) -> None:
    flows, _ = backtests
    bot = await make_bot(
        client, developer_key, voters=[v.model_dump(mode="json") for v in test_decide.PANEL]
    )
    async with app.state.runtime.sessionmaker() as session:
        version = await session.scalar(select(BotVersion).where(BotVersion.bot_id == bot["id"]))
    assert version is not None
    first = datetime(2026, 1, 2, tzinfo=UTC)
    live = await live_decisions(app, maker, version, first, 3)
    await edited(app, live[0], candles_sha256="ab" * 32)
    created = await start(
        client,
        bot,
        headers(developer_key),
        llm="recorded",
        start=first.isoformat(),
        end=(first + 6 * HOUR).isoformat(),
    )
    await flows.run(created.json()["id"], budget_s=None)
    shown = await client.get(
        f"/api/v1/backtests/{created.json()['id']}",
        headers=headers(developer_key),
    )
    report = shown.json()["result"]
    assert report["llm"]["by_source"] == {"asked": 0, "none": 4, "recorded": 2}
    assert report["llm"]["window_mismatches"] == 1
    assert any(
        "1 live decision(s) saw other candles" in warning for warning in report["warnings"]
    ), report["warnings"]
