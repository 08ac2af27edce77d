"""The Celery tasks: thin wrappers that pass ids to the flows of app/."""
