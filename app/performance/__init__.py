"""A subscription's performance: the figures of an equity curve (figures.py), the hourly equity
points (flows.py) and the renter's read of a subscription's results (router, service, repository)."""
