"""Binance spot through python-binance: error translation, filters, one rate-limit governor."""
