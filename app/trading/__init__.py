"""The trading engine: candles, indicators, decisions, risk checks and order execution."""
