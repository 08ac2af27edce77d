"""What every domain shares: settings, database sessions, caches, errors, logging and metrics."""
