"""A subscription's performance: an equity curve's figures (figures.py), the hourly equity
points (flows.py) and the renter's read of a subscription's results (router, service)."""
