"""Fixtures of the chain tests: the decision makers of tests/trading/test_decide.py, which
decide through the sandbox's candles and the fake LLMs."""

from tests.trading.test_decide import llm_settings, maker, processes

__all__ = ["llm_settings", "maker", "processes"]
