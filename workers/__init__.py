"""Celery beat and workers: thin task wrappers around the service coroutines in app/."""
