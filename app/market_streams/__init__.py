"""Binance's market streams feeding the workers: `botmarket stream`, one active process.

It streams the klines of every (symbol, timeframe) an active subscription trades and the
prices of every symbol held, sends a group's decide job as its candle closes, and keeps the
stream set following the database. Beat's dispatch and polling stay as the safety net.
"""
