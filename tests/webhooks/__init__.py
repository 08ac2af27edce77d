"""Tests of signed webhooks."""
