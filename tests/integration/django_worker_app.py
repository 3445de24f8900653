"""The demo app as a Django project's worker runs it: results through django-celery-results.

Run as `celery -A tests.integration.django_worker_app worker` with CELERY_RESULT_BACKEND
set to the operator's spelling of the same table (django-db+postgresql://…): Django's
database settings are taken from it, then the app's backend is Celery's "django-db".
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

import django
from django.conf import settings

_url = urlsplit(os.environ["CELERY_RESULT_BACKEND"].removeprefix("django-db+"))
settings.configure(
    INSTALLED_APPS=["django_celery_results"],
    DATABASES={"default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname,
        "PORT": str(_url.port),
    }},
    USE_TZ=True,
    TIME_ZONE="UTC",
)
django.setup()

from django.core.management import call_command  # noqa: E402  (needs the settings)
from django.db import connections  # noqa: E402

call_command("migrate", "django_celery_results", verbosity=0)
connections.close_all()  # the pool's children must not share the parent's connection
os.environ["CELERY_RESULT_BACKEND"] = "django-db"

from celery_operator.devstack.demo_app import app  # noqa: E402

__all__ = ["app"]
