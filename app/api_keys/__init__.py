"""API keys: their creation, listing and revocation by admins, the assertion keys and mode of
marketplace keys, and the authentication of every request by its key."""
