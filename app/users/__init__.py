"""Users: renters (made on a principal's first request) and developers."""
