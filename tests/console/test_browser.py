"""The console in headless Chromium (Debian's, driven by Playwright) against a real uvicorn
process and a real Celery worker: sign in, a bot's chart drawn, a backtest's progress reaching
100 % and its chart appearing, a new decision appearing without a reload, a revoked key's
session ending, a marketplace key refused, a write without the CSRF token refused, and no
serious or critical axe-core violation on each main page. Each main page's screenshot is saved
under var/test-artifacts/console/ (docs/console/ holds the README's copies).

Without /usr/bin/chromium these tests skip, or fail under CI / REQUIRE_SERVICES=1 (`make
test` installs it).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from app.api_keys.schemas import Scope
from app.core.db import create_engine, create_sessionmaker
from tests.conftest import make_key
from tests.console.test_developer import add_decision
from tests.fakes import RunningFakes
from tests.helpers import ROOT, api_processes, headers
from tests.sandbox_server import SandboxServer
from tests.workers.test_celery_e2e import Stack, stack_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ARTIFACTS = ROOT / "var" / "test-artifacts" / "console"
# Three months of 1h candles: four saved chunks, so the bar has steps to show.
WINDOW = {
    "symbol": "BTCUSDT",
    "timeframe": "1h",
    "start": "2025-10-01",
    "end": "2026-01-01",
    "quote_amount": "1000",
    "llm": "indicators",
}
_axe = Axe()
T = TypeVar("T")


def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`function` called in a thread: Playwright's sync API holds the main thread's event
    loop while a test runs, so anything that runs a loop of its own (asyncio.run, a
    migration) runs beside it."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(function, *args, **kwargs).result()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return in_thread(asyncio.run, coroutine)


@dataclass(frozen=True)
class Served:
    stack: Stack
    url: str
    developer_key: str
    admin_key: str
    marketplace_key: str
    bot: dict[str, Any]

    def api(self, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method, f"{self.url}{path}", headers=headers(key), timeout=30, **kwargs
        )

    def add_decision(self, reasoning: str, minutes_ago: int) -> None:
        async def add() -> None:
            engine = create_engine(self.stack.settings.database_url, pool=False)
            try:
                await add_decision(
                    create_sessionmaker(engine),
                    self.bot["version_id"],
                    reasoning,
                    minutes_ago=minutes_ago,
                )
            finally:
                await engine.dispose()

        run(add())


@pytest.fixture(scope="module")
def served(
    sandbox: SandboxServer, llm_fakes_server: RunningFakes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The embedded deployment (SQLite, its broker a SQLite file of its own, so no other
    suite's worker takes its tasks): one API process and one worker."""
    directory = tmp_path_factory.mktemp("console")
    stack = in_thread(
        stack_for,
        f"sqlite+aiosqlite:///{directory / 'botmarket.db'}",
        f"sqla+sqlite:///{directory / 'broker.sqlite'}",
        None,
        sandbox,
        llm_fakes_server,
        directory,
        RATE_LIMIT_PER_MINUTE="100000",
    )
    keys = {
        scope: run(make_key(stack.settings, scope, scope.value))
        for scope in (Scope.developer, Scope.admin, Scope.marketplace)
    }
    with api_processes(stack.env, directory, 1) as [url], stack.worker("console", concurrency=1):
        bot = httpx.post(
            f"{url}/api/v1/bots", json={"name": "trend"}, headers=headers(keys[Scope.developer])
        )
        assert bot.status_code == 201, bot.text
        yield Served(
            stack,
            url,
            keys[Scope.developer],
            keys[Scope.admin],
            keys[Scope.marketplace],
            bot.json(),
        )


def sign_in(page: Page, served: Served, key: str) -> None:
    page.goto(f"{served.url}/console")
    expect(page).to_have_url(f"{served.url}/console/sign-in?ended=1")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def check_page(page: Page, name: str) -> None:
    """No serious or critical axe-core violation, and the page's screenshot kept."""
    results = _axe.run(page)
    serious = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], serious
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def finished_backtest(served: Served) -> str:
    """A backtest of the bot, started through the API and run by the worker."""
    started = served.api(
        "POST",
        f"/api/v1/bots/{served.bot['id']}/backtests",
        served.developer_key,
        json={**WINDOW, "start": "2025-12-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
    )
    assert started.status_code == 202, started.text
    backtest_id: str = started.json()["id"]
    deadline = time.monotonic() + 120
    while (
        status := served.api(
            "GET", f"/api/v1/backtests/{backtest_id}", served.developer_key
        ).json()["status"]
    ) != "succeeded":
        assert status in ("queued", "running") and time.monotonic() < deadline, status
        time.sleep(0.5)
    return backtest_id


def drawn_points(page: Page, selector: str) -> int:
    """How many points the browser parsed into the polyline, once it has laid it out."""
    chart = page.locator(selector)
    expect(chart).to_be_visible()
    width = chart.locator("polyline").evaluate("line => line.getBBox().width")
    assert width > 100  # drawn across the chart, not collapsed into a dot
    points: int = chart.locator("polyline").evaluate("line => line.points.numberOfItems")
    assert points == int(chart.get_attribute("data-points") or 0)
    return points


def test_sign_in_shows_my_bots(page: Page, served: Served) -> None:
    sign_in(page, served, served.developer_key)
    expect(page).to_have_url(f"{served.url}/console/bots")
    expect(page.get_by_role("link", name="trend")).to_be_visible()
    # The key is nowhere the browser keeps things: not in a cookie, not in storage.
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == ["botmarket_console"]
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
    assert served.developer_key not in str(cookies)
    assert (
        page.evaluate("() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
        == "{}{}"
    )
    check_page(page, "bots")


def test_a_marketplace_key_is_refused(page: Page, served: Served) -> None:
    sign_in(page, served, served.marketplace_key)
    expect(page.get_by_role("alert")).to_contain_text("Marketplace keys cannot sign in")
    assert not [c for c in page.context.cookies() if c["name"] == "botmarket_console"]
    check_page(page, "sign-in-refused")


def test_a_backtest_started_from_the_form_reaches_100_percent_and_is_drawn(
    page: Page, served: Served
) -> None:
    sign_in(page, served, served.developer_key)
    page.goto(f"{served.url}/console/bots/{served.bot['id']}/backtests/new")
    page.get_by_label("Symbol").fill("btc")
    page.get_by_role("button", name="Start the backtest").click()
    expect(page.locator('[data-field="symbol"]')).to_contain_text("upper-case")
    check_page(page, "backtest-form")
    for label, value in (
        ("Symbol", WINDOW["symbol"]),
        ("Timeframe", WINDOW["timeframe"]),
        ("Start (UTC)", WINDOW["start"]),
        ("End (UTC, exclusive)", WINDOW["end"]),
        ("Starting capital (quote)", WINDOW["quote_amount"]),
    ):
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_label("LLM votes").select_option("indicators")
    page.get_by_role("button", name="Start the backtest").click()
    expect(page).to_have_url(re.compile(rf"{served.url}/console/backtests/[0-9a-f]{{32}}$"))
    seen: list[float] = []
    deadline = time.monotonic() + 120
    while page.locator("#equity-chart").count() == 0:
        assert time.monotonic() < deadline, f"the backtest did not finish: {seen}"
        try:
            seen.append(
                float(page.locator("#progress").get_attribute("data-percent", timeout=2000) or 0)
            )
        except Exception:  # the page reloads itself once the run is done
            pass
        time.sleep(0.2)
    expect(page.locator("#progress")).to_have_attribute("data-percent", "100.00")
    expect(page.locator("#progress-bar")).to_have_attribute("value", "100.00")
    assert seen == sorted(seen), seen
    # 2,209 values (the start, then every close), every 5th drawn and the last: 443.
    assert drawn_points(page, "#equity-chart") == 443
    assert drawn_points(page, "#drawdown-chart") == drawn_points(page, "#equity-chart")
    check_page(page, "backtest")


def test_the_bot_page_draws_its_latest_backtest_and_a_new_decision_appears_live(
    page: Page, served: Served
) -> None:
    backtest_id = finished_backtest(served)
    sign_in(page, served, served.developer_key)
    streams: list[str] = []
    fragments: list[str] = []
    page.on(
        "request",
        lambda request: (
            (streams if request.url.endswith("/stream") else fragments).append(request.url)
            if "/decisions" in request.url
            else None
        ),
    )
    # The stream is open once the part has asked for itself (what changed before it opened).
    with page.expect_response(lambda reply: reply.url.endswith("/decisions")):
        page.goto(f"{served.url}/console/bots/{served.bot['id']}")
    # 745 values (the start, then every close of 31 days), every 2nd drawn: 373.
    assert drawn_points(page, "#equity-chart") == 373
    page.evaluate("() => { window.stillThisPage = true; }")
    reasoning = f"breakout {uuid.uuid4().hex[:8]}"
    served.add_decision(reasoning, minutes_ago=0)
    expect(page.get_by_text(reasoning)).to_be_visible(timeout=20_000)
    assert page.evaluate("() => window.stillThisPage") is True  # no reload
    # It came over the stream: the part asked for itself only when the stream opened, and
    # never polled (it would have every 2 s had the stream failed).
    assert streams == [f"{served.url}/console/bots/{served.bot['id']}/decisions/stream"]
    assert fragments == [f"{served.url}/console/bots/{served.bot['id']}/decisions"]
    check_page(page, "bot")
    second = finished_backtest(served)
    page.goto(f"{served.url}/console/backtests/compare?a={backtest_id}&b={second}")
    assert drawn_points(page, "#run-1-equity-chart") == drawn_points(page, "#run-2-equity-chart")
    check_page(page, "compare")


def test_admin_pages(page: Page, served: Served) -> None:
    sign_in(page, served, served.admin_key)
    for path, name in (
        ("/console/admin/health", "health"),
        ("/console/admin/keys", "keys"),
        ("/console/admin/marketplaces", "marketplaces"),
    ):
        page.goto(f"{served.url}{path}")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        check_page(page, name)


def test_revoking_the_key_ends_its_session_and_the_page_goes_to_the_sign_in(
    browser: Browser, served: Served
) -> None:
    key = run(make_key(served.stack.settings, Scope.developer, "short-lived"))
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, served, key)
    page.goto(f"{served.url}/console/bots")
    expect(page.get_by_role("heading", name="My bots")).to_be_visible()
    keys = served.api("GET", "/api/v1/api-keys", served.admin_key).json()["items"]
    [row] = [k for k in keys if k["name"] == "short-lived"]
    assert (
        served.api("DELETE", f"/api/v1/api-keys/{row['id']}", served.admin_key).status_code == 204
    )
    page.reload()
    expect(page).to_have_url(f"{served.url}/console/sign-in?ended=1")
    expect(page.get_by_text("Your session has ended")).to_be_visible()
    context.close()


def test_a_write_without_the_csrf_token_is_refused(page: Page, served: Served) -> None:
    sign_in(page, served, served.developer_key)
    expect(page).to_have_url(f"{served.url}/console/bots")
    # The session cookie goes along (same origin), the page's token does not.
    refused = page.evaluate(
        """async url => (await fetch(url, {method: "POST", body: new URLSearchParams(),
            credentials: "same-origin"})).status""",
        f"{served.url}/console/sign-out",
    )
    assert refused == 403
    page.reload()
    expect(page).to_have_url(f"{served.url}/console/bots")  # still signed in
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{served.url}/console/sign-in")
