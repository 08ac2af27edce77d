"""Subscriptions: a renter running one bot version on one symbol and timeframe, until it ends."""
