"""Idempotent writes: one run per (API key, Idempotency-Key), the same response to every copy."""
