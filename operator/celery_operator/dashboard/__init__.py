"""`kubectl celery dashboard`: a local web UI over ScheduledTasks and PeriodicTasks.

It talks to the API server with the user's own kubeconfig through celery_operator.kube
(so it shows and does exactly what the user's RBAC allows), keeps one watch per kind feeding
an in-memory cache, and streams changes to the page as server-sent events.
"""
