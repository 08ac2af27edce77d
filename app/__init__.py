"""The botmarket backend: the API, the trading engine its workers run, and the sandbox exchange."""
