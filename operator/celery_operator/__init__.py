"""celery-operator: Celery work as Kubernetes resources (ScheduledTask, PeriodicTask)."""

__version__ = "0.1.0.dev0"
