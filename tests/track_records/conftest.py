"""Fixtures of the track record tests."""

# The backtest flows wired to the sandbox: the record shows the backtests they finish.
from tests.backtests.conftest import backtests, clients  # noqa: F401
