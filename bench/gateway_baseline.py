"""The yardstick of bench/gateway.py: a bare FastAPI app answering the renter's read path with a
body of the same size and shape, and nothing else (no key, no database, no Redis)."""

from fastapi import FastAPI

BODY = {
    "id": "0192f1c2a3b4c5d6e7f8a9b0c1d2e3f4",
    "bot_id": "0192f1c2a3b4c5d6e7f8a9b0c1d2e3f5",
    "bot_version_id": "0192f1c2a3b4c5d6e7f8a9b0c1d2e3f6",
    "symbol": "BTCUSDT",
    "timeframe": "1h",
    "mode": "paper",
    "quote_amount": "100",
    "risk": {},
    "status": "active",
    "status_reason": None,
    "ends_at": None,
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/v1/subscriptions/{sub_id}")
    async def subscription(sub_id: str) -> dict[str, object]:
        return {**BODY, "id": sub_id}

    return app
