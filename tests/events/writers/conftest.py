"""The writers are tested on the real paths: the trading, subscription and backtest flows,
wired as their own tests wire them."""

from tests.backtests.conftest import backtests, clients  # noqa: F401
from tests.trading.conftest import (  # noqa: F401
    clock,
    flows,
    prices,
    sandbox_clients,
    subscription_flows,
    trading_executor,
)
