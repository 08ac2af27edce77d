"""Bots: a developer's strategy, its numbered versions, and its marketplace registrations."""
