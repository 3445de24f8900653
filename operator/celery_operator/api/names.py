"""API group, version, kinds and plurals of the custom resources."""

from __future__ import annotations

GROUP = "celeryoperator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

SCHEDULED_KIND = "ScheduledTask"
SCHEDULED_PLURAL = "scheduledtasks"
PERIODIC_KIND = "PeriodicTask"
PERIODIC_PLURAL = "periodictasks"
CELERYAPP_KIND = "CeleryApp"
CELERYAPP_PLURAL = "celeryapps"
CLUSTER_CELERYAPP_KIND = "ClusterCeleryApp"
CLUSTER_CELERYAPP_PLURAL = "clusterceleryapps"

# A PeriodicTask's runs: the parent's name, the fire time they stand for, and "true" on a run
# asked for by hand (the operator writes them; `kubectl celery` reads them).
PARENT_LABEL = f"{GROUP}/periodic-task"
SCHEDULED_TIME_ANNOTATION = f"{GROUP}/scheduled-time"
MANUAL_LABEL = f"{GROUP}/manual-run"
