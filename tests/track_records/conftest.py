"""Fixtures of the track record tests."""

from pathlib import Path

import pytest

from app.core.settings import Settings

# The backtest flows wired to the sandbox: the record shows the backtests they finish.
from tests.backtests.conftest import backtests, clients  # noqa: F401
from tests.conftest import make_settings

# The smallest threshold the settings allow: the fewest renters a test must make.
MIN_RENTERS = 5


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path).model_copy(
        update={"track_record_min_renters": MIN_RENTERS}
    )
