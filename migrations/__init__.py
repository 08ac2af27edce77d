"""Alembic's history, shipped in the wheel so that `botmarket migrate` runs from any install."""
