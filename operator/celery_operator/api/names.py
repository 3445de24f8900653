"""API group, version, kinds and plurals of the two custom resources."""

from __future__ import annotations

GROUP = "celeryoperator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

SCHEDULED_KIND = "ScheduledTask"
SCHEDULED_PLURAL = "scheduledtasks"
PERIODIC_KIND = "PeriodicTask"
PERIODIC_PLURAL = "periodictasks"
