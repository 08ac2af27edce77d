"""Marketplaces: whose renters a marketplace key acts for, and how their requests are proven."""
