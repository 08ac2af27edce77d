"""A Binance-spot-compatible exchange for offline runs, demos, tests and benchmarks.

The unmodified python-binance AsyncClient trades against it once its API_URL points here.
"""
