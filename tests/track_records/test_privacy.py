"""What a track record gives away of one renter, tested as an attacker would: with k renters
of which k - 1 are the attacker's own (whose returns and fills it knows exactly), it solves
for the last one's return and fills from every figure of the body: the figure itself (a
minimum, maximum, median or quantile), a sum, a mean, and the quartile and median inversions.
Two worlds that differ only in the last renter's results give the same bytes, so no derivation
from the body can be right in both. Below TRACK_RECORD_MIN_RENTERS renters with a fill, a mode
shows no figure at all."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.core.settings import Settings
from app.models import Subscription
from tests.api.test_contract import listed_bot, subscribe
from tests.helpers import headers, new_principal
from tests.track_records.conftest import MIN_RENTERS
from tests.track_records.rows import set_results, subscription

QUOTE = Decimal(100)


@dataclass(frozen=True)
class Results:
    """A renter's hourly equity as multiples of its capital, and its fills."""

    path: tuple[str, ...]
    fills: int

    @property
    def return_pct(self) -> Decimal:
        return (Decimal(self.path[-1]) - 1) * 100


def _numbers(body: object) -> Iterator[Decimal]:
    """Every number the body publishes, wherever it is."""
    if isinstance(body, dict):
        for value in body.values():
            yield from _numbers(value)
    elif isinstance(body, list):
        for value in body:
            yield from _numbers(value)
    elif isinstance(body, int | str) and not isinstance(body, bool):
        try:
            yield Decimal(body)
        except InvalidOperation:
            pass


def derive(body: object, known: list[Decimal], renters: int) -> set[Decimal]:
    """The attacker's candidates for the hidden renter's figure, from every published number
    and every pair of them."""
    figures = set(_numbers(body))
    total = sum(known, Decimal(0))
    candidates: set[Decimal] = set()
    for figure in figures:
        # The figure itself, a sum over all renters, a mean over them; the median of an even
        # count is the mean of the hidden value and a known one.
        candidates |= {figure, figure - total, figure * renters - total}
        candidates |= {2 * figure - value for value in known}
    # With three values, v1 = 2 * p25 - median and v3 = 2 * p75 - median.
    candidates |= {2 * a - b for a, b in itertools.permutations(figures, 2)}
    return candidates


def test_the_attacker_succeeds_against_quantiles_a_mean_and_a_sum() -> None:
    """The derivations are the real attacks: each gives back the hidden figure from the
    statistics the record used to publish, or might naively have."""
    known, hidden = [Decimal(-12), Decimal("30.5")], Decimal("7.25")
    p25, median, p75 = statistics.quantiles([*known, hidden], n=4, method="inclusive")
    assert hidden in derive({"p25": str(p25), "median": str(median), "p75": str(p75)}, known, 3)
    mean = statistics.mean([*known, hidden])
    assert hidden in derive({"mean": str(mean)}, known, 3)
    fills_known, fills_hidden = [Decimal(4), Decimal(9)], Decimal(6)
    assert fills_hidden in derive({"trade_count": 19}, fills_known, 3)


@pytest.fixture
async def renters(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> tuple[str, list[Subscription]]:
    """A listed bot and MIN_RENTERS paper subscriptions, one per renter; the last renter's
    is the one the attacker does not control."""
    bot = await listed_bot(client, developer_key)
    subs = []
    for _ in range(MIN_RENTERS):
        response = await subscribe(
            client, marketplace_key, new_principal(), bot["id"], quote_amount=str(QUOTE)
        )
        assert response.status_code == 201, response.text
        subs.append(await subscription(app, response.json()["id"]))
    return bot["id"], subs


# The attacker's placements of its own renters, and two results of the hidden renter that it
# must not be able to tell apart.
ATTACKS = {
    # Around the hidden one: it is the median of the returns, and of the fills.
    "straddle": (
        [
            Results(("0.6",), 1),
            Results(("0.7",), 1),
            Results(("1.4",), 200),
            Results(("1.6",), 200),
        ],
        Results(("0.97", "1.015"), 2),
        Results(("1.049",), 4),
    ),
    # In the hidden one's band: its count rises by exactly one.
    "crowd": (
        [
            Results(("1.01",), 2),
            Results(("1.02",), 2),
            Results(("1.03",), 3),
            Results(("1.04",), 3),
        ],
        Results(("1.005",), 1),
        Results(("1.0499",), 4),
    ),
    # Far from it: alone in its band, which is merged; two results in different bands.
    "isolate": (
        [
            Results(("1.5",), 150),
            Results(("1.6",), 160),
            Results(("1.7",), 170),
            Results(("1.8",), 180),
        ],
        Results(("0.97",), 1),
        Results(("1.03",), 7),
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_the_attacker_cannot_derive_the_last_renters_return_or_fills(
    app: FastAPI,
    client: httpx.AsyncClient,
    marketplace_key: str,
    settings: Settings,
    renters: tuple[str, list[Subscription]],
    attack: str,
) -> None:
    bot_id, subs = renters
    capital = QUOTE * settings.paper_wallet_multiple
    controlled, hidden_a, hidden_b = ATTACKS[attack]
    for sub, results in zip(subs, controlled, strict=False):
        await set_results(app, sub, capital, list(results.path), results.fills)

    async def world(hidden: Results) -> bytes:
        await set_results(app, subs[-1], capital, list(hidden.path), hidden.fills)
        response = await client.get(
            f"/api/v1/bots/{bot_id}/track-record", headers=headers(marketplace_key)
        )
        assert response.status_code == 200, response.text
        assert response.json()["modes"]["paper"]["renters"] == MIN_RENTERS
        return response.content

    body_a, body_b = await world(hidden_a), await world(hidden_b)
    assert hidden_a.return_pct != hidden_b.return_pct and hidden_a.fills != hidden_b.fills
    # Byte for byte: nothing computed from the body tells the two worlds apart.
    assert body_a == body_b
    paper = httpx.Response(200, content=body_a).json()["modes"]["paper"]
    for figure, known, hidden in (
        ("return", [r.return_pct for r in controlled], (hidden_a.return_pct, hidden_b.return_pct)),
        ("fills", [Decimal(r.fills) for r in controlled], (hidden_a.fills, hidden_b.fills)),
    ):
        candidates = derive(paper, known, MIN_RENTERS)
        # Whatever the attacker picks from its candidates, one of the two worlds proves it
        # wrong: the body pins neither value.
        pinned = [value for value in hidden if value in candidates]
        assert len(pinned) < 2, (figure, pinned)


async def test_below_the_threshold_no_figure_is_shown(
    app: FastAPI,
    client: httpx.AsyncClient,
    marketplace_key: str,
    settings: Settings,
    renters: tuple[str, list[Subscription]],
) -> None:
    bot_id, subs = renters
    capital = QUOTE * settings.paper_wallet_multiple
    # One renter short: the others have fills, the last only equity (renters without a fill
    # do not count, however their equity moved).
    for sub in subs[:-1]:
        await set_results(app, sub, capital, ["1.1"], 1)
    await set_results(app, subs[-1], capital, ["1.2"], 0)
    url = f"/api/v1/bots/{bot_id}/track-record"
    paper = (await client.get(url, headers=headers(marketplace_key))).json()["modes"]["paper"]
    assert paper == {
        "suppressed": True,
        "renters": None,
        "return_pct": None,
        "max_drawdown_pct": None,
        "fills": None,
    }
    # Its first fill makes the mode's figures appear.
    await set_results(app, subs[-1], capital, ["1.2"], 1)
    paper = (await client.get(url, headers=headers(marketplace_key))).json()["modes"]["paper"]
    assert paper["suppressed"] is False and paper["renters"] == MIN_RENTERS


def test_the_threshold_defaults_to_10_and_is_never_below_5(settings: Settings) -> None:
    assert Settings.model_fields["track_record_min_renters"].default == 10
    with pytest.raises(ValidationError, match="track_record_min_renters"):
        Settings.model_validate({**settings.model_dump(), "track_record_min_renters": 4})
