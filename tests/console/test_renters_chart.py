"""A bot's page charts its renters' median equity per mode where the track record shows the
mode (TRACK_RECORD_MIN_RENTERS renters with a fill in it), from their hourly snapshots, and
never below that threshold."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from tests.api.test_contract import listed_bot, subscribe
from tests.conftest import make_settings
from tests.console.conftest import sign_in
from tests.helpers import new_principal
from tests.track_records.conftest import MIN_RENTERS
from tests.track_records.rows import add, equity_points, subscription, trade

QUOTE = Decimal(100)
# Each paper renter's hourly equity as a multiple of their starting capital. The fifth's
# fourth hour has no one beside it: not drawn. Medians: 100, 105, 120 (% of capital).
PATHS = [
    ["1.0", "1.1", "1.2"],
    ["1.0", "0.9", "0.8"],
    ["1.0", "1.0", "1.5"],
    ["1.0", "1.2", "1.1"],
    ["1.0", "1.05", "1.3", "2.0"],
]
SVG = re.compile(r'<svg class="chart" id="renters-paper-chart"[^>]*>.*?</svg>', re.S)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path).model_copy(
        update={"track_record_min_renters": MIN_RENTERS}
    )


async def bot_page_with_renters(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
    paths: list[list[str]],
) -> httpx.Response:
    """A bot whose paper renters, one subscription each with a fill, had these paths; and a
    renter without a fill whose equity must count for nothing."""
    bot = await listed_bot(client, developer_key)
    capital = QUOTE * settings.paper_wallet_multiple
    for index, path in enumerate([*paths, ["5", "5", "5"]]):
        response = await subscribe(
            client, marketplace_key, new_principal(), bot["id"], quote_amount=str(QUOTE)
        )
        assert response.status_code == 201, response.text
        sub = await subscription(app, response.json()["id"])
        fills = [trade(sub)] if index < len(paths) else []
        await add(app, *equity_points(sub, capital, path), *fills)
    await sign_in(client, developer_key)
    page = await client.get(f"/console/bots/{bot['id']}")
    assert page.status_code == 200
    return page


async def test_the_renters_median_equity_is_drawn_where_the_mode_has_renters_enough(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    assert len(PATHS) == MIN_RENTERS
    page = await bot_page_with_renters(app, client, settings, developer_key, marketplace_key, PATHS)
    svg = SVG.search(page.text)
    assert svg is not None, page.text
    drawn = svg.group(0)
    for attribute, value in (
        ("points", "3"),
        ("first", "100.0000"),
        ("last", "120.0000"),
        ("low", "100.0000"),
        ("high", "120.0000"),
    ):
        assert f'data-{attribute}="{value}"' in drawn
    [points] = re.findall(r'<polyline class="line" points="([^"]*)"', drawn)
    ys = [float(p.split(",")[1]) for p in points.split()]
    # 100 at the bottom, 120 at the top, 105 a quarter of the way up (SVG's y grows down).
    assert ys[0] > ys[1] > ys[2]
    assert ys[1] == pytest.approx(ys[0] - (ys[0] - ys[2]) / 4, abs=0.1)
    assert "paper renters&#39; median equity" in page.text


async def test_no_renters_chart_below_the_threshold(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    page = await bot_page_with_renters(
        app, client, settings, developer_key, marketplace_key, PATHS[: MIN_RENTERS - 1]
    )
    assert "renters-paper-chart" not in page.text
    assert "median equity" not in page.text
    assert f"at least {MIN_RENTERS} with a fill" in page.text
