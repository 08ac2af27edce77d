"""The admin's pages: system health, API keys, marketplaces."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/console/admin", include_in_schema=False)
