"""Real-world beat_schedule entries, copied from public projects (each cites its source).

Used by tests/unit/test_import_equal_celery.py: every entry is imported and its fire times
compared with the ones Celery computes for it. `time_zone` is the project's own Celery
timezone (None: not set there, UTC); the test also runs every entry in other zones.
Entries that the importer must skip (e.g. Sentry's crontab_with_minute_jitter, a helper
returning a crontab with a random minute) are left out: the corpus is what converts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.schedules import crontab

SENTRY = ("getsentry/sentry", "src/sentry/conf/server.py",
          "000b735536174c877f044a17a57ea728dbe48178")


@dataclass(frozen=True)
class Source:
    repo: str
    path: str
    commit: str = ""


@dataclass(frozen=True)
class CorpusEntry:
    source: Source
    name: str
    entry: dict[str, Any]
    time_zone: str | None = None


def _sentry(name: str, task: str, schedule: Any, **options: Any) -> CorpusEntry:
    entry: dict[str, Any] = {"task": task, "schedule": schedule}
    if options:
        entry["options"] = options
    return CorpusEntry(Source(*SENTRY), name, entry)


CORPUS: tuple[CorpusEntry, ...] = (
    # getsentry/sentry src/sentry/conf/server.py: CELERYBEAT_SCHEDULE_CONTROL
    _sentry("check-auth", "sentry.tasks.check_auth", crontab(minute="*/1"),
            expires=60, queue="auth.control"),
    _sentry("sync-options-control", "sentry.tasks.options.sync_options_control",
            timedelta(seconds=10), expires=10, queue="options.control"),
    _sentry("deliver-from-outbox-control", "sentry.tasks.enqueue_outbox_jobs_control",
            crontab(minute="*/1"), expires=30, queue="outbox.control"),
    _sentry("schedule-deletions-control",
            "sentry.tasks.deletion.run_scheduled_deletions_control",
            crontab(minute="*/15"), expires=60 * 25, queue="cleanup.control"),
    _sentry("reattempt-deletions-control", "sentry.tasks.deletion.reattempt_deletions_control",
            crontab(hour=10, minute=0), expires=60 * 25, queue="cleanup.control"),
    _sentry("schedule-hybrid-cloud-foreign-key-jobs-control",
            "sentry.tasks.deletion.hybrid_cloud.schedule_hybrid_cloud_foreign_key_jobs_control",
            crontab(minute="*/15"), queue="cleanup.control"),
    _sentry("hybrid-cloud-repair-mappings", "sentry.tasks.organization_mapping.repair_mappings",
            crontab(minute=0, hour="*/1"), expires=3600),
    # getsentry/sentry src/sentry/conf/server.py: CELERYBEAT_SCHEDULE_REGION
    _sentry("send-beacon", "sentry.tasks.send_beacon", crontab(minute=0, hour="*/1"),
            expires=3600),
    _sentry("send-ping", "sentry.tasks.send_ping", crontab(minute="*/1"), expires=60),
    _sentry("flush-buffers", "sentry.tasks.process_buffer.process_pending",
            timedelta(seconds=10), expires=10, queue="buffers.process_pending"),
    _sentry("sync-options", "sentry.tasks.options.sync_options", timedelta(seconds=10),
            expires=10, queue="options"),
    _sentry("schedule-digests", "sentry.tasks.digests.schedule_digests",
            timedelta(seconds=30), expires=30),
    _sentry("monitors-clock-pulse", "sentry.monitors.tasks.clock_pulse",
            crontab(minute="*/1"), expires=60),
    _sentry("clear-expired-snoozes", "sentry.tasks.clear_expired_snoozes",
            crontab(minute="*/5"), expires=300),
    _sentry("clear-expired-rulesnoozes", "sentry.tasks.clear_expired_rulesnoozes",
            crontab(minute="*/5"), expires=300),
    _sentry("clear-expired-raw-events", "sentry.tasks.clear_expired_raw_events",
            crontab(minute="*/15"), expires=300),
    _sentry("deliver-from-outbox", "sentry.tasks.enqueue_outbox_jobs", crontab(minute="*/1"),
            expires=30),
    _sentry("update-user-reports", "sentry.tasks.update_user_reports",
            crontab(minute="*/15"), expires=300),
    _sentry("schedule-auto-resolution", "sentry.tasks.schedule_auto_resolution",
            crontab(minute="*/10"), expires=60 * 25),
    _sentry("auto-remove-inbox", "sentry.tasks.auto_remove_inbox", crontab(minute="*/15"),
            expires=60 * 25),
    _sentry("schedule-deletions", "sentry.tasks.deletion.run_scheduled_deletions",
            crontab(minute="*/15"), expires=60 * 25),
    _sentry("reattempt-deletions", "sentry.tasks.deletion.reattempt_deletions",
            crontab(hour=10, minute=0), expires=60 * 25),
    _sentry("schedule-weekly-organization-reports-new",
            "sentry.tasks.weekly_reports.schedule_organizations",
            crontab(minute=0, hour=12, day_of_week="monday"), expires=60 * 60 * 3),
    _sentry("schedule-monthly-invite-missing-org-members",
            "sentry.tasks.invite_missing_org_members.schedule_organizations",
            crontab(minute=0, hour=7, day_of_month="1"), expires=60 * 25),
    _sentry("schedule-hybrid-cloud-foreign-key-jobs",
            "sentry.tasks.deletion.hybrid_cloud.schedule_hybrid_cloud_foreign_key_jobs",
            crontab(minute="*/15")),
    _sentry("monitor-release-adoption", "sentry.release_health.tasks.monitor_release_adoption",
            crontab(minute=0), expires=3600, queue="releasemonitor"),
    _sentry("fetch-release-registry-data",
            "sentry.tasks.release_registry.fetch_release_registry_data",
            crontab(minute="*/5"), expires=3600),
    _sentry("fetch-appstore-builds", "sentry.tasks.app_store_connect.refresh_all_builds",
            crontab(minute=0, hour="*/1"), expires=3600),
    _sentry("snuba-subscription-checker", "sentry.snuba.tasks.subscription_checker",
            crontab(minute="*/20"), expires=20 * 60),
    _sentry("transaction-name-clusterer",
            "sentry.ingest.transaction_clusterer.tasks.spawn_clusterers",
            crontab(minute=17), expires=3600),
    _sentry("span.descs.clusterer",
            "sentry.ingest.span_clusterer.tasks.spawn_span_cluster_projects",
            crontab(minute=42), expires=3600),
    _sentry("auto-enable-codecov", "sentry.tasks.auto_enable_codecov.enable_for_org",
            crontab(minute=30, hour="0"), expires=3600),
    _sentry("dynamic-sampling-boost-low-volume-projects",
            "sentry.dynamic_sampling.tasks.boost_low_volume_projects", crontab(minute="*/10")),
    _sentry("dynamic-sampling-boost-low-volume-transactions",
            "sentry.dynamic_sampling.tasks.boost_low_volume_transactions",
            crontab(minute="*/10")),
    _sentry("dynamic-sampling-recalibrate-orgs",
            "sentry.dynamic_sampling.tasks.recalibrate_orgs", crontab(minute="*/10")),
    _sentry("dynamic-sampling-sliding-window-org",
            "sentry.dynamic_sampling.tasks.sliding_window_org", crontab(minute="*/10")),
    _sentry("weekly-escalating-forecast",
            "sentry.tasks.weekly_escalating_forecast.run_escalating_forecast",
            crontab(minute=0, hour="*/6"), expires=60 * 60 * 3),
    _sentry("schedule_auto_transition_to_ongoing",
            "sentry.tasks.schedule_auto_transition_to_ongoing", crontab(minute="*/5"),
            expires=3600),
    _sentry("github_comment_reactions", "sentry.tasks.integrations.github_comment_reactions",
            crontab(minute=0, hour=16)),
    _sentry("poll_recap_servers", "sentry.tasks.poll_recap_servers", crontab(minute="*/1"),
            expires=60),
    _sentry("dynamic-sampling-collect-orgs", "sentry.dynamic_sampling.tasks.collect_orgs",
            crontab(minute="*/20")),
    _sentry("statistical-detectors-detect-regressions",
            "sentry.tasks.statistical_detectors.run_detection", crontab(minute=0, hour="*/1")),
    _sentry("backfill-artifact-bundle-index",
            "sentry.debug_files.tasks.backfill_artifact_index_updates", crontab(minute="*/1"),
            expires=60),
    _sentry("refresh-artifact-bundles-in-use",
            "sentry.debug_files.tasks.refresh_artifact_bundles_in_use", crontab(minute="*/1"),
            expires=60),
    CorpusEntry(
        Source("Mihail12/prototype_ci_cd", "celeryconfig.py"),
        "test-celery",
        {"task": "tasks.schedule_task", "schedule": timedelta(seconds=10),
         "args": ("task-5", "/schedule_task")},
    ),
    CorpusEntry(
        Source("Mykytenkovladislav/book_shop_and_warehouse",
               "shop/shop/settings/components/background.py"),
        "celery.backend_cleanup",
        {"task": "celery.backend_cleanup", "schedule": timedelta(seconds=300), "args": ()},
    ),
    CorpusEntry(
        Source("Mykytenkovladislav/book_shop_and_warehouse",
               "shop/shop/settings/components/background.py"),
        "periodic",
        {"task": "store.tasks.add", "schedule": timedelta(seconds=5), "args": (4, 5)},
    ),
    CorpusEntry(
        Source("McTechie/cropkart", "flask-backend/celery_config.py"),
        "run-task-every-day",
        {"task": "myapp.tasks.run_my_task", "schedule": crontab(hour=5, minute=0)},
    ),
    CorpusEntry(
        Source("Kurennu/Tomiko-trade", "TomikoProject/main/celeryconfig.py"),
        "parse-reviews-daily",
        {"task": "tasks.parse_reviews", "schedule": 86400.0},
    ),
    CorpusEntry(
        Source("edward0128/Ptt-crawler", "celery_demo/celery_app/celeryconfig.py"),
        "add-every-30-seconds",
        {"task": "celery_app.task1.add", "schedule": timedelta(seconds=20), "args": (5, 8)},
        time_zone="Asia/Shanghai",
    ),
    CorpusEntry(
        Source("edward0128/Ptt-crawler", "celery_demo/celery_app/celeryconfig.py"),
        "multiply-at-some-time",
        {"task": "celery_app.task2.multiply", "schedule": crontab(hour=9, minute=50),
         "args": (3, 7)},
        time_zone="Asia/Shanghai",
    ),
)
