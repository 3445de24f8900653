"""Django settings of the test worker's project: the database is the one named by
CELERY_RESULT_BACKEND, in the operator's spelling (django-db+postgresql://…).

A settings module, as in a real project, so that DJANGO_SETTINGS_MODULE is set and
Celery installs its Django fix-up: each pool child closes the database connection it
inherited from the worker's main process. Without it, a child forked after the main
process stored a result (a task terminated by revoke) shares that connection, and the
two can hang each other mid-transaction.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

_url = urlsplit(os.environ["CELERY_RESULT_BACKEND"].removeprefix("django-db+"))

INSTALLED_APPS = ["django_celery_results"]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": _url.path.lstrip("/"),
    "USER": unquote(_url.username or ""),
    "PASSWORD": unquote(_url.password or ""),
    "HOST": _url.hostname,
    "PORT": str(_url.port),
}}
USE_TZ = True
TIME_ZONE = "UTC"
