"""Clients of the outside services: the Binance exchange and the LLM providers."""
