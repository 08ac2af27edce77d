"""The ensemble rule: worked cases and its properties (hypothesis)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.bots.strategy import Ensemble
from app.trading.ensemble import (
    RULE_VERSION,
    Action,
    Ballot,
    UnknownRule,
    apply_rule,
    combine,
    ensemble_of,
)

D = Decimal
unit = st.decimals(min_value=-1, max_value=1, places=4)
confidence = st.decimals(min_value=0, max_value=1, places=4)
weight = st.decimals(min_value=D("0.1"), max_value=10, places=2)
ballot = st.builds(
    Ballot, weight=weight, action=st.sampled_from([*Action, None]), confidence=confidence
)
params = st.builds(
    Ensemble,
    indicator_weight=st.decimals(min_value=0, max_value=5, places=2),
    threshold=st.decimals(min_value=D("0.01"), max_value=1, places=2),
    quorum=st.integers(min_value=0, max_value=4),
    fallback=st.sampled_from(["hold", "indicators_only"]),
)


def test_worked_example_from_the_readme() -> None:
    ballots = [
        Ballot(D(1), Action.BUY, D("0.8")),
        Ballot(D(1), Action.HOLD, D("0.9")),
        Ballot(D(1), None),  # timed out: left out of the average
    ]
    outcome = combine(D("0.3"), ballots, Ensemble(), voters_configured=3)
    # (1 * 0.3 + 1 * 0.8 + 1 * 0) / (1 + 1 + 1) = 0.3667 >= 0.25
    assert outcome == type(outcome)(Action.BUY, D("0.3667"), None)


def test_confident_disagreement_holds() -> None:
    ballots = [Ballot(D(1), Action.BUY, D("0.9")), Ballot(D(3), Action.SELL, D("0.6"))]
    outcome = combine(D("-0.9"), ballots, Ensemble(), voters_configured=2)
    assert outcome.action is Action.HOLD and outcome.reason and "conflict" in outcome.reason


def test_quorum_and_fallbacks() -> None:
    ballots = [Ballot(D(1), Action.BUY, D(1)), Ballot(D(1), None)]
    held = combine(D("0.9"), ballots, Ensemble(), voters_configured=2)
    assert held.action is Action.HOLD and "quorum not met: 1 of 2" in (held.reason or "")
    alone = combine(D("0.9"), ballots, Ensemble(fallback="indicators_only"), voters_configured=2)
    assert alone.action is Action.BUY and alone.score == D("0.9")
    no_voters = combine(D("-0.3"), [], Ensemble(), voters_configured=0)
    assert no_voters.action is Action.SELL and no_voters.reason is None


@given(unit, st.lists(ballot, max_size=6), params)
def test_score_stays_in_range(indicator: Decimal, ballots: list[Ballot], p: Ensemble) -> None:
    outcome = combine(indicator, ballots, p, voters_configured=len(ballots))
    assert D(-1) <= outcome.score <= D(1)


@given(unit, st.lists(ballot, max_size=6), params)
def test_mirroring_every_input_mirrors_the_output(
    indicator: Decimal, ballots: list[Ballot], p: Ensemble
) -> None:
    mirrored = [
        Ballot(b.weight, b.action.mirrored() if b.action else None, b.confidence) for b in ballots
    ]
    outcome = combine(indicator, ballots, p, voters_configured=len(ballots))
    flipped = combine(-indicator, mirrored, p, voters_configured=len(ballots))
    assert flipped.score == -outcome.score
    assert flipped.action is outcome.action.mirrored()


@given(unit, st.lists(ballot, max_size=6), params, weight)
def test_an_abstainer_changes_nothing(
    indicator: Decimal, ballots: list[Ballot], p: Ensemble, w: Decimal
) -> None:
    # Quorum is part of p here: the default quorum depends on how many voters a bot
    # configures, which is the bot's choice, not the vote's.
    before = combine(indicator, ballots, p, voters_configured=6)
    after = combine(indicator, [*ballots, Ballot(w, None)], p, voters_configured=6)
    assert after == before


@given(unit, st.lists(ballot, max_size=6), params)
def test_the_recorded_parameters_give_back_the_outcome(
    indicator: Decimal, ballots: list[Ballot], p: Ensemble
) -> None:
    # As a decision records them (app/trading/decide.py) and a verifier reads them back.
    recorded = {**p.model_dump(mode="json"), "prompt_version": "vote-v1", "voters_configured": 3}
    live = apply_rule(RULE_VERSION, p, indicator, ballots)
    assert apply_rule(RULE_VERSION, ensemble_of(recorded), indicator, ballots) == live
    assert live == combine(indicator, ballots, p, voters_configured=len(ballots))


def test_an_unknown_rule_version_is_refused() -> None:
    with pytest.raises(UnknownRule, match="ensemble-v0"):
        apply_rule("ensemble-v0", Ensemble(), D(0), [])
