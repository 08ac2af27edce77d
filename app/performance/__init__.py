"""A subscription's performance: the figures of an equity curve (figures.py) and the API's
read of a subscription's results (service.py, with its queries and body)."""
