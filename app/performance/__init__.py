"""A subscription's performance: returns, drawdown and equity from its recorded trades."""
