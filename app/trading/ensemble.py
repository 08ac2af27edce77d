"""The ensemble rule: how the indicator score and the LLM votes make one action.

Pure functions, versioned: a decision records its rule's version and the parameters it ran
with, and `apply_rule` gives the outcome of any recorded version, so the live decision and
anyone recomputing it (app/verification/verifier.py) run the same code.

    conviction(vote) = +confidence for BUY, -confidence for SELL, 0 for HOLD
    score = (w_ind * indicator_score + sum(w_i * conviction_i)) / (w_ind + sum(w_i))
            over the voters that answered; abstainers are left out, not counted as neutral
    quorum missed  -> fallback: HOLD, or the indicator score alone (indicators_only)
    BUY and SELL both at confidence >= conflict_confidence -> HOLD
    otherwise BUY if score >= threshold, SELL if score <= -threshold, else HOLD
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from app.bots.strategy import Ensemble

RULE_VERSION = "ensemble-v1"
SCORE_PLACES = Decimal("0.0001")


class Action(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"

    def mirrored(self) -> Action:
        return {Action.BUY: Action.SELL, Action.SELL: Action.BUY}.get(self, Action.HOLD)


@dataclass(frozen=True)
class Ballot:
    """One voter's answer; `action` None means it abstained."""

    weight: Decimal
    action: Action | None
    confidence: Decimal = Decimal(0)

    @property
    def conviction(self) -> Decimal:
        sign = {Action.BUY: 1, Action.SELL: -1}.get(self.action, 0) if self.action else 0
        return sign * self.confidence


@dataclass(frozen=True)
class Outcome:
    action: Action
    score: Decimal
    reason: str | None  # why the panel did not decide as usual (quorum, conflict), if so


def required_quorum(params: Ensemble, voters_configured: int) -> int:
    if params.quorum is not None:
        return params.quorum
    return 2 if voters_configured >= 2 else voters_configured


def combine(
    indicator: Decimal, ballots: Sequence[Ballot], params: Ensemble, voters_configured: int
) -> Outcome:
    answered = [b for b in ballots if b.action is not None]
    quorum = required_quorum(params, voters_configured)
    reason = None
    if len(answered) < quorum:
        reason = f"quorum not met: {len(answered)} of {quorum} required LLM votes"
        if params.fallback == "hold":
            return Outcome(Action.HOLD, Decimal(0), f"{reason}; fallback hold")
        reason = f"{reason}; fallback indicators_only"
        answered = []
    weight = params.indicator_weight + sum((b.weight for b in answered), Decimal(0))
    total = params.indicator_weight * indicator + sum(
        (b.weight * b.conviction for b in answered), Decimal(0)
    )
    score = (total / weight if weight else Decimal(0)).quantize(SCORE_PLACES)
    strong = {b.action for b in answered if b.confidence >= params.conflict_confidence}
    if {Action.BUY, Action.SELL} <= strong:
        return Outcome(Action.HOLD, score, "conflict: confident BUY and SELL votes")
    if score >= params.threshold:
        return Outcome(Action.BUY, score, reason)
    if score <= -params.threshold:
        return Outcome(Action.SELL, score, reason)
    return Outcome(Action.HOLD, score, reason)


Rule = Callable[[Decimal, Sequence[Ballot], Ensemble, int], Outcome]

# Every rule a chained decision may name, by the version it records. A changed rule is a new
# version added here; an old one stays, so old decisions still recompute.
RULES: dict[str, Rule] = {RULE_VERSION: combine}


class UnknownRule(LookupError):
    pass


def ensemble_of(rule_params: Mapping[str, Any]) -> Ensemble:
    """The ensemble parameters among a decision's recorded `rule_params` (which also note the
    prompt version and how many voters were configured)."""
    return Ensemble.model_validate(
        {k: v for k, v in rule_params.items() if k in Ensemble.model_fields}
    )


def apply_rule(
    rule_version: str, params: Ensemble, indicator: Decimal, ballots: Sequence[Ballot]
) -> Outcome:
    """The outcome under the rule `rule_version` of the indicator score and every seat's
    ballot, abstentions included (a round not asked has none)."""
    rule = RULES.get(rule_version)
    if rule is None:
        raise UnknownRule(f"unknown ensemble rule {rule_version!r}")
    return rule(indicator, ballots, params, len(ballots))
