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
