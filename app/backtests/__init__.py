"""Backtests: a bot version replayed over stored history on the live decision, risk and fill
code (replay.py), and the statistics of the result (metrics.py)."""
