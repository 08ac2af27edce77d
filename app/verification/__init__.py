"""Verifiable decisions: each bot's hash chain of its decisions, its signed head, and the
public routes anyone can check them from."""
