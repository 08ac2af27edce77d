"""Events: the outbox every state change writes in its own transaction (service.py), the
sequencer that numbers committed events and the feed that pages them (feed.py, router.py)."""
