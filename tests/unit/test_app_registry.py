"""BackendRegistry: one backend per connection set, shared, closed with its last holder.
Real CeleryBackend objects (they connect only when used; these never are)."""

from __future__ import annotations

import pytest

from celery_operator.dispatch.backend import CeleryBackend
from celery_operator.dispatch.registry import (
    BackendRegistry,
    ConnectionSet,
    open_backend,
    url_problem,
)

PASSWORD = "p@ss:w/rd"
ENCODED = "p%40ss%3Aw%2Frd"


class Recorded(CeleryBackend):
    """A real backend that remembers being closed."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def opened(conn: ConnectionSet) -> Recorded:
    return Recorded(conn.broker_url, conn.result_backend_url, dict(conn.transport_options))


A = ConnectionSet.of("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/1")
B = ConnectionSet.of("redis://127.0.0.1:2/0", "redis://127.0.0.1:2/1")


def test_apps_with_the_same_connection_set_share_one_backend() -> None:
    registry = BackendRegistry(opened)
    first = registry.use("CeleryApp/a/default", A)
    second = registry.use("CeleryApp/b/default", ConnectionSet.of(A.broker_url,
                                                                   A.result_backend_url))
    assert first is second
    assert registry.open_count() == 1
    registry.release("CeleryApp/a/default")
    assert isinstance(first, Recorded) and not first.closed  # b still holds it
    registry.release("CeleryApp/b/default")
    assert first.closed
    assert registry.open_count() == 0
    assert registry.backend_of("CeleryApp/b/default") is None


def test_a_changed_connection_set_closes_the_old_backend_only_when_unused() -> None:
    registry = BackendRegistry(opened)
    old = registry.use("x", A)
    registry.use("y", A)
    new = registry.use("x", B)  # x's Secret now names another broker
    assert new is not old and isinstance(old, Recorded) and not old.closed
    assert registry.backend_of("x") is new
    registry.use("y", B)
    assert old.closed
    assert registry.open_count() == 1
    assert registry.use("y", B) is new  # using the same set again changes nothing


def test_close_all_closes_every_backend_and_new_ones_call_on_open() -> None:
    seen: list[CeleryBackend] = []
    registry = BackendRegistry(opened, on_open=seen.append)
    a, b = registry.use("x", A), registry.use("y", B)
    registry.use("z", A)
    assert seen == [a, b]
    later: list[CeleryBackend] = []
    registry.on_every_backend(later.append)  # the open ones now, new ones when opened
    c = registry.use("w", ConnectionSet.of("redis://127.0.0.1:3/0", "redis://127.0.0.1:3/1"))
    assert later == [a, b, c] and seen == [a, b]
    registry.close_all()
    assert isinstance(a, Recorded) and isinstance(b, Recorded) and a.closed and b.closed
    assert registry.open_count() == 0


def test_transport_options_take_celerys_names_and_reach_the_publishers_app() -> None:
    conn = ConnectionSet.of(A.broker_url, A.result_backend_url,
                            {"visibilityTimeout": 7200, "queue_order_strategy": "sorted"})
    assert conn.transport_options == (("queue_order_strategy", "sorted"),
                                      ("visibility_timeout", 7200))
    backend = open_backend(conn)
    try:
        options = backend.publisher.app.conf.broker_transport_options
        assert options == {"visibility_timeout": 7200, "queue_order_strategy": "sorted"}
    finally:
        backend.close()
    assert conn != A  # other options: another connection set, another backend


def test_the_repr_of_a_connection_set_hides_the_passwords() -> None:
    conn = ConnectionSet.of(f"redis://:{ENCODED}@h:6379/0", f"redis://u:{PASSWORD}@h:6379/1")
    text = repr(conn) + str(conn)
    assert PASSWORD not in text and ENCODED not in text and "ss:w" not in text
    assert "redis://:***@h:6379/0" in text and "redis://u:***@h:6379/1" in text


@pytest.mark.parametrize(
    ("url", "broker", "problem"),
    [
        ("redis://h:6379/0", True, None),
        (f"rediss://:{ENCODED}@h:6380/3", False, None),
        ("", True, "the broker URL is empty"),
        ("h:6379", True, "the broker URL's scheme 'h' is not one Celery knows"),
        ("127.0.0.1:6379", True, "the broker URL has no scheme (e.g. redis://)"),
        ("bogus://h/0", False, "the result backend URL's scheme 'bogus' is not one Celery knows"),
        ("rpc://", False, None),
        (f"db+postgresql://u:{ENCODED}@h:5432/app", False, None),
        (f"django-db+postgresql://u:{ENCODED}@h/app", False, None),
        ("mongodb://h/0", False, "the result backend URL's scheme 'mongodb' is not supported "
                                 "(use redis://, rediss://, db+postgresql://, "
                                 "django-db+postgresql:// or rpc://)"),
        ("db+mysql://u:p@h/app", False, "the result backend URL's database 'mysql' is not "
                                        "supported (use db+postgresql:// or "
                                        "django-db+postgresql://)"),
        ("db+postgresql:///app", False, "the result backend URL has no host"),
        ("sqs://h/", True, "the broker URL's scheme 'sqs' is not supported (use amqp://, "
                           "amqps://, pyamqp://, redis://, rediss://)"),
        ("redis://h:port/0", True, "the broker URL does not parse (the port is not a number)"),
        (f"redis://:{PASSWORD}@h:6379/0", True,
         "the broker URL does not parse (the port is not a number)"),
        ("redis:///0", True, "the broker URL has no host"),
        ("redis://h/zero", True, "the broker URL's database 'zero' is not a number"),
        ("redis://h/0 x", True, "the broker URL contains whitespace"),
    ],
)
def test_url_problems_say_what_is_wrong_without_quoting_the_url(
    url: str, broker: bool, problem: str | None
) -> None:
    assert url_problem(url, broker=broker) == problem
