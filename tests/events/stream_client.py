"""A live stream's client side for the tests: the API served by a real uvicorn on loopback,
WebSocket frames (the `websockets` library) and Server-Sent Events (httpx) read as the
marketplace's browser reads them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers import headers
from tests.sandbox_server import free_port

# Long enough for any step of these tests; reached only when something is broken.
PATIENCE_S = 20.0


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """`app` (its lifespan already running) behind uvicorn on a free loopback port."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "uvicorn exited"
        await asyncio.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def ticket(base: str, key: str, principal: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        response = await http.post("/api/v1/stream-tickets", headers=headers(key, principal))
    assert response.status_code == 201, response.text
    return response.json()


@contextlib.asynccontextmanager
async def socket(base: str, path: str, key: str | None = None) -> AsyncIterator[ClientConnection]:
    """A WebSocket on `path` (the ticket's url, or the bare path with a key)."""
    extra = {"X-API-Key": key} if key is not None else {}
    # No compression: what the server writes is what the socket carries.
    async with connect(f"ws://{base}{path}", additional_headers=extra, compression=None) as ws:
        yield ws


async def frame(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), PATIENCE_S))


async def events(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next `count` frames, each an event frame."""
    frames = [await frame(ws) for _ in range(count)]
    assert {f["type"] for f in frames} <= {"event"}, frames
    return frames


def ids(frames: list[dict[str, Any]]) -> list[str]:
    return [f["event"]["id"] for f in frames]
