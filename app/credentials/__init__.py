"""A renter's exchange API keys: stored encrypted, shown masked, decrypted only to trade."""
