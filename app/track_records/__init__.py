"""A bot's public track record: its renters' results per mode, aggregated so no renter shows,
and its latest backtest per version."""
