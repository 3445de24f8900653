"""`kubectl celery`: the everyday verbs on ScheduledTasks and PeriodicTasks.

kubectl finds the `kubectl-celery` console script on PATH. Talks to the API server only
through celery_operator.kube.objects; schedule math is the engine's own (scheduling/).
"""
