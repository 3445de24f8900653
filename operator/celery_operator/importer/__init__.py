"""`celery-operator import`: existing Celery schedules turned into PeriodicTask manifests.

Sources: a Celery app's `beat_schedule` (beat.py), django-celery-beat's tables read with
SQLAlchemy Core (djangobeat.py) and RedBeat's keys in Redis (redbeat.py). Each source yields
neutral `Entry` values (entries.py); manifests.py turns them into manifests checked by the
API model's own parsers; an entry that cannot be converted is skipped with its reason
(report.py) and never approximated.
"""
