"""Helpers of the console's tests: signing a client in as a browser would."""

from __future__ import annotations

import re

import httpx

# Backtests run in the test's process on the sandbox's market, as the backtest tests run them.
from tests.backtests.conftest import backtests, clients  # noqa: F401

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
