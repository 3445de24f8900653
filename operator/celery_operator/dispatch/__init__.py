"""The only layer that imports Celery, kombu and Redis: publish, read results, listen, revoke."""
