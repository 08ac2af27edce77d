"""Decision quality, pure: each decision's calls (the ensemble's, the indicators' alone and each
voter's) scored against the next candle's close. A BUY is right when the next close is higher
than the decided candle's, a SELL when lower; a HOLD is counted apart; a call whose next candle
is not stored is not scored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from app.bots.strategy import Ensemble
from app.trading.ensemble import RULE_VERSION, Action, combine

RATE_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class Vote:
    provider: str
    model: str
    action: str | None  # None: abstained


@dataclass(frozen=True)
class Decided:
    """One decision, with the closes of its candle and the next, when stored."""

    version: int
    action: str
    indicators_action: str | None  # None: its rule cannot be replayed here
    votes: tuple[Vote, ...]
    close: Decimal | None
    next_close: Decimal | None

    @property
    def next_return(self) -> Decimal | None:
        if self.close is None or self.next_close is None or self.close <= 0:
            return None
        return self.next_close / self.close - 1


def indicators_action(rule_version: str, params: dict[str, object], score: Decimal) -> str | None:
    """What the decision's rule makes of its indicator score with no LLM vote."""
    if rule_version != RULE_VERSION:
        return None
    ensemble = Ensemble.model_validate(
        {k: v for k, v in params.items() if k in Ensemble.model_fields}
    )
    return combine(score, [], ensemble, 0).action.value


@dataclass
class Calls:
    """A signal's calls against the next candle: hits among the scored BUY and SELL calls, their
    summed signed return (+r for BUY, -r for SELL), and the HOLDs apart."""

    scored: int = 0
    hits: int = 0
    holds: int = 0
    directional_return: Decimal = Decimal(0)

    def add(self, action: str | None, next_return: Decimal | None) -> None:
        if action == Action.HOLD:
            self.holds += 1
        elif action is not None and next_return is not None:
            sign = 1 if action == Action.BUY else -1
            self.scored += 1
            self.hits += sign * next_return > 0
            self.directional_return += sign * next_return

    @property
    def hit_rate(self) -> Decimal | None:
        return rate(self.hits, self.scored)


@dataclass
class Panel:
    """Votes of one voter or one version's voters: asked, abstained, and agreeing with the
    ensemble among those that answered."""

    asked: int = 0
    abstained: int = 0
    agreed: int = 0

    def add(self, vote: Vote, ensemble: str) -> None:
        self.asked += 1
        self.abstained += vote.action is None
        self.agreed += vote.action == ensemble

    @property
    def abstention_rate(self) -> Decimal | None:
        return rate(self.abstained, self.asked)

    @property
    def agreement_rate(self) -> Decimal | None:
        return rate(self.agreed, self.asked - self.abstained)


@dataclass
class VersionFigures:
    decisions: int = 0
    panel: Panel = field(default_factory=Panel)
    ensemble: Calls = field(default_factory=Calls)
    indicators_only: Calls = field(default_factory=Calls)
    candles: int = 0  # decisions whose next candle is stored
    buy_and_hold_return: Decimal = Decimal(0)


@dataclass
class VoterFigures:
    decisions: int = 0
    panel: Panel = field(default_factory=Panel)
    calls: Calls = field(default_factory=Calls)


def rate(part: int, whole: int) -> Decimal | None:
    return (Decimal(part) / whole).quantize(RATE_PLACES) if whole else None


def by_version(decisions: Iterable[Decided]) -> dict[int, VersionFigures]:
    figures: dict[int, VersionFigures] = {}
    for decided in decisions:
        version = figures.setdefault(decided.version, VersionFigures())
        move = decided.next_return
        version.decisions += 1
        version.ensemble.add(decided.action, move)
        version.indicators_only.add(decided.indicators_action, move)
        if move is not None:
            version.candles += 1
            version.buy_and_hold_return += move
        for vote in decided.votes:
            version.panel.add(vote, decided.action)
    return figures


def by_voter(decisions: Iterable[Decided]) -> dict[tuple[str, str], VoterFigures]:
    figures: dict[tuple[str, str], VoterFigures] = {}
    for decided in decisions:
        for vote in decided.votes:
            voter = figures.setdefault((vote.provider, vote.model), VoterFigures())
            voter.decisions += 1
            voter.panel.add(vote, decided.action)
            voter.calls.add(vote.action, decided.next_return)
    return figures
