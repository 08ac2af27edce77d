"""Helpers of the console's tests: signing a client in as a browser would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

# Backtests run in the test's process on the sandbox's market, as the backtest tests run them.
from tests.backtests.conftest import backtests, clients  # noqa: F401
from tests.conftest import SERVICES_REQUIRED

# Playwright's own browser download does not work on these machines: Debian's Chromium
# (`make test` installs it with apt).
CHROMIUM = Path("/usr/bin/chromium")

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, f"no CSRF token in the page: {page.text[:500]}"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, api_key: str) -> httpx.Response:
    """The sign-in form fetched, then posted with its CSRF token and the key."""
    form = await client.get("/console/sign-in")
    assert form.status_code == 200
    return await client.post(
        "/console/sign-in", data={"csrf_token": csrf_of(form), "api_key": api_key}
    )


async def signed_in_csrf(client: httpx.AsyncClient) -> str:
    """The CSRF token of the client's session, from a page it is shown on."""
    return csrf_of(await client.get("/console/bots"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium for one test module; without it the browser tests skip, or fail
    where services are required (CI). Module-scoped rather than pytest-playwright's session
    browser: Playwright's sync API holds the thread's event loop while it runs, and the test
    files that a pytest process runs next need it (their fixtures run asyncio.run)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if SERVICES_REQUIRED:
            pytest.fail(f"{message}, and CI or REQUIRE_SERVICES=1 requires it")
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a context of its own: no cookie of another test's session."""
    context = browser.new_context()
    yield context.new_page()
    context.close()
