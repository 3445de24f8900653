"""Stores task results with the real django-celery-results backend, as a Django worker does.

Run as a script (its own process: Django is configured once):
    python django_result_rows.py HOST PORT DATABASE USER PASSWORD
Creates the table with django-celery-results' migrations, then stores through its
DatabaseBackend: <prefix>-done (SUCCESS {"n": 3}), <prefix>-failed (FAILURE
ValueError('boom')), <prefix>-started (STARTED on w1@node), <prefix>-pickled (SUCCESS
with the pickle serializer), where the prefix is read from stdin.
"""

from __future__ import annotations

import sys


def main(host: str, port: str, name: str, user: str, password: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django_celery_results"],
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": name,
                               "USER": user, "PASSWORD": password, "HOST": host,
                               "PORT": port}},
        USE_TZ=True,
        TIME_ZONE="UTC",
    )
    django.setup()
    from celery import Celery
    from django.core.management import call_command

    call_command("migrate", "django_celery_results", verbosity=0)
    prefix = sys.stdin.read().strip()
    app = Celery("rows", backend="django-db", set_as_current=False)
    app.conf.update(result_serializer="json", accept_content=["json", "pickle"],
                    result_extended=True)
    backend = app.backend
    backend.store_result(f"{prefix}-done", {"n": 3}, "SUCCESS")
    backend.store_result(f"{prefix}-failed", ValueError("boom"), "FAILURE")
    backend.store_result(f"{prefix}-started", {"pid": 7, "hostname": "w1@node"}, "STARTED")
    pickling = Celery("pickling", backend="django-db", set_as_current=False)
    pickling.conf.update(result_serializer="pickle", accept_content=["pickle"])
    pickling.backend.store_result(f"{prefix}-pickled", {"n": 4}, "SUCCESS")


if __name__ == "__main__":
    main(*sys.argv[1:6])
