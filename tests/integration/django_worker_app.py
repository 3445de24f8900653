"""The demo app as a Django project's worker runs it: results through django-celery-results.

Run as `celery -A tests.integration.django_worker_app worker` with CELERY_RESULT_BACKEND
set to the operator's spelling of the same table (django-db+postgresql://…): Django's
database settings are taken from it (django_worker_settings), then the app's backend is
Celery's "django-db".
"""

from __future__ import annotations

import os

# Before the Celery app exists: Celery installs its Django fix-up only when this is set.
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.integration.django_worker_settings"

import django

django.setup()

from django.core.management import call_command  # noqa: E402  (needs the settings)
from django.db import connections  # noqa: E402

call_command("migrate", "django_celery_results", verbosity=0)
connections.close_all()  # the pool's children must not share the parent's connection
os.environ["CELERY_RESULT_BACKEND"] = "django-db"

from celery_operator.devstack.demo_app import app  # noqa: E402

__all__ = ["app"]
