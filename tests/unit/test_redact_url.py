"""Secrets never reach logs, Events or status: config.redact_url for the broker/backend
URLs the operator logs, dispatch.errors.public_error for exception text it shows."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from celery_operator.config import redact_url, redact_urls_in
from celery_operator.dispatch.errors import PUBLIC_MAX, PublishFailed, public_error
from celery_operator.logs import JsonFormatter, TextFormatter


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:secret@host/0", "redis://:***@host/0"),
        ("amqp://guest:guest@localhost:5672//", "amqp://guest:***@localhost:5672//"),
        ("redis://:p%40ss@host/0", "redis://:***@host/0"),
        # Unencoded '@', ':' and '/' in the password.
        ("redis://:p@ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pa:ss@host/0", "redis://user:***@host/0"),
        ("redis://user:p@s:s/w@rd@host:6379/1", "redis://user:***@host:6379/1"),
        ("unix://:pw/x@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        # Secrets in query parameters; others stay.
        ("redis://host/0?password=abc&db=1", "redis://host/0?password=***&db=1"),
        (
            "redis://host/0?passwd=a&pass=b&db=2&Secret_Key=c&access_token=d&api_key=e",
            "redis://host/0?passwd=***&pass=***&db=2&Secret_Key=***&access_token=***"
            "&api_key=***",
        ),
        ("redis://host/0?password=x@y", "redis://host/0?password=***"),
        (
            "rediss://:pw@host/0?ssl_cert_reqs=required&token=t#frag",
            "rediss://:***@host/0?ssl_cert_reqs=required&token=***#frag",
        ),
        ("redis://host/0?password=", "redis://host/0?password="),
        # kombu failover lists: every URL, and a ';' inside a password is no separator.
        (
            "redis://:a@h1:6379/0;redis://:b@h2:6380/0",
            "redis://:***@h1:6379/0;redis://:***@h2:6380/0",
        ),
        (
            "sentinel://:pw@s1:26379;sentinel://s2:26379;sentinel://u:pw@s3:26379",
            "sentinel://:***@s1:26379;sentinel://s2:26379;sentinel://u:***@s3:26379",
        ),
        ("redis://:pa;ss@host/0", "redis://:***@host/0"),
        ("redis://h1/0;redis://h2/0?password=z", "redis://h1/0;redis://h2/0?password=***"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_an_at_sign_after_the_host_hides_more_never_less() -> None:
    # Which '@' ends the userinfo is ambiguous: the password is hidden either way.
    out = redact_url("redis://:topsecret@host/0?x=a@b")
    assert "topsecret" not in out
    assert out.startswith("redis://:***@")


def test_urls_inside_text_are_redacted_and_the_rest_stays() -> None:
    text = "Cannot connect to redis://:hunter2@10.0.0.1:6379/0: refused; amqp://u:p@h//, end"
    assert redact_urls_in(text) == (
        "Cannot connect to redis://:***@10.0.0.1:6379/0: refused; amqp://u:***@h//, end"
    )
    assert redact_urls_in("{'broker_url': 'redis://h/0?password=z'}") == (
        "{'broker_url': 'redis://h/0?password=***'}"
    )
    assert redact_urls_in("published 3 tasks at 10:30") == "published 3 tasks at 10:30"


def _record_with_exception() -> logging.LogRecord:
    try:
        raise ConnectionError("Cannot connect to redis://:exc-secret@broker:6379/0")
    except ConnectionError:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "kombu", logging.WARNING, __file__, 1, "retrying %s", ("redis://:msg-secret@b/0",),
        exc_info,
    )


def test_log_lines_never_carry_a_urls_password() -> None:
    text = TextFormatter("%(levelname)s %(message)s").format(_record_with_exception())
    assert text.startswith("WARNING retrying redis://:***@b/0\n")
    assert "redis://:***@broker:6379/0" in text
    assert "secret" not in text
    entry = json.loads(JsonFormatter().format(_record_with_exception()))
    assert entry["message"] == "retrying redis://:***@b/0"
    assert "redis://:***@broker:6379/0" in entry["exception"]
    assert "secret" not in json.dumps(entry)


@pytest.mark.parametrize(
    ("exc", "shown"),
    [
        (
            ConnectionError("Error 111 connecting to 10.0.3.7:6379. Connection refused."),
            "ConnectionError: Error 111 connecting to <address>. Connection refused.",
        ),
        (
            ConnectionError("Error -2 connecting to redis-master.infra.svc:6379. Unknown."),
            "ConnectionError: Error -2 connecting to <address>. Unknown.",
        ),
        (
            ConnectionError("Error -2 connecting to redis-master:6379. Name unknown."),
            "ConnectionError: Error -2 connecting to <address>. Name unknown.",
        ),
        (
            OSError("Cannot connect to redis://:hunter2@10.0.0.5:6379/0: refused"),
            "OSError: Cannot connect to <url> refused",
        ),
        (OSError("login admin:hunter2@broker failed"), "OSError: login ***@broker failed"),
        (
            ConnectionError("Error 111 connecting to ::1:6379. Connection refused."),
            "ConnectionError: Error 111 connecting to <address>. Connection refused.",
        ),
        (
            ConnectionError("Error 111 connecting to [fd00::5]:6379."),
            "ConnectionError: Error 111 connecting to <address>.",
        ),
        (TimeoutError("no answer from 192.168.1.20"), "TimeoutError: no answer from <address>"),
        (
            FileNotFoundError("Error 2 connecting to unix socket: /run/redis/r.sock. Gone."),
            "FileNotFoundError: Error 2 connecting to unix socket: <path>. Gone.",
        ),
        # What is not an address stays.
        (
            ValueError("due at 2026-12-01T16:55:53+00:00"),
            "ValueError: due at 2026-12-01T16:55:53+00:00",
        ),
        (ValueError("at 10:30 exactly"), "ValueError: at 10:30 exactly"),
        (KeyError(), "KeyError"),
    ],
)
def test_public_error_hides_addresses_and_credentials(exc: BaseException, shown: str) -> None:
    assert public_error(exc) == shown


def test_public_error_is_short_and_keeps_a_publish_failures_own_message() -> None:
    assert len(public_error(ValueError("x" * 5000))) == PUBLIC_MAX
    failed = PublishFailed(permanent=False, reason="NoRoute", public_message="no queue bound")
    assert public_error(failed) == "no queue bound"
    assert str(failed) == "no queue bound"
