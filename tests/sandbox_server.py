"""The sandbox exchange served by uvicorn in a background thread, for the real SDK to reach."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from binance import AsyncClient
from starlette.types import ASGIApp

from app.sandbox.server import create_sandbox_app
from app.sandbox.streams import StreamRules


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SandboxServer:
    url: str

    def admin(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        response = httpx.request(method, f"{self.url}{path}", **kwargs)  # type: ignore[arg-type]
        response.raise_for_status()
        return response

    def new_account(self, **balances: str) -> tuple[str, str]:
        """A fresh account with generated keys (never anything that looks like a real key)."""
        api_key, api_secret = f"sbx-{secrets.token_hex(16)}", secrets.token_hex(32)
        self.admin(
            "POST",
            "/sandbox/accounts",
            json={
                "api_key": api_key,
                "api_secret": api_secret,
                "balances": balances or {"USDT": "10000"},
            },
        )
        return api_key, api_secret

    def limit_weight(self, per_minute: int, violations_before_ban: int, ban_seconds: float) -> None:
        self.admin(
            "POST",
            "/sandbox/config",
            json={
                "weight_per_minute": per_minute,
                "violations_before_ban": violations_before_ban,
                "ban_seconds": ban_seconds,
                "reset_usage": True,
            },
        )

    def reset_weight_limits(self) -> None:
        """Binance's own: 6000 per minute, banned on the third violation, for 120 s."""
        self.limit_weight(6000, 3, 120)

    def orders(self, api_key: str) -> list[dict]:
        return self.admin("GET", "/sandbox/orders", params={"api_key": api_key}).json()

    def requests(self) -> dict[str, int]:
        return self.admin("GET", "/sandbox/stats").json()["requests"]

    async def client(
        self, api_key: str | None = None, api_secret: str | None = None
    ) -> AsyncClient:
        client = AsyncClient(api_key, api_secret)
        client.API_URL = f"{self.url}/api"
        await client.ping()
        return client


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, lifespan: str = "off", **options: Any) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port from a background thread; yield its URL.
    `options` are uvicorn's (the sandbox's streams' keepalive)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan, **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the local server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def serve_sandbox() -> Iterator[SandboxServer]:
    rules = StreamRules()  # Binance's
    with serve_in_thread(create_sandbox_app(stream_rules=rules), **rules.uvicorn_options()) as url:
        yield SandboxServer(url)
