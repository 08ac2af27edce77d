"""Signed webhooks: endpoints that receive the events their owner could read in the feed,
delivered at least once with retries (Standard Webhooks headers)."""
