"""The test RabbitMQ node boots only the applications the broker needs."""

from __future__ import annotations

from pathlib import Path

from celery_operator.devstack.rabbitmqserver import boot_apps


def _app(plugins: Path, folder: str, body: str) -> None:
    ebin = plugins / folder / "ebin"
    ebin.mkdir(parents=True)
    name = folder.rsplit("-", 1)[0]
    (ebin / f"{name}.app").write_text(f"{{application, {name}, [{body}]}}.\n")


def test_the_broker_and_what_it_depends_on_are_linked_and_nothing_else(tmp_path: Path) -> None:
    _app(tmp_path, "rabbit-3.10.8",
         "{applications, [kernel, stdlib, ra, rabbit_common]},"
         "{included_applications, [osiris]}")
    _app(tmp_path, "rabbitmq_prelaunch-3.10.8", "{applications, [kernel, cuttlefish]}")
    _app(tmp_path, "ra-2.2.0", "{applications, [kernel, aten, gen_batch_server]}")
    _app(tmp_path, "rabbit_common-3.10.8", "{applications, []}")
    _app(tmp_path, "osiris-1.3.1", "{applications, [kernel]}")
    _app(tmp_path, "cuttlefish-3.0.1", "{applications, [kernel]}")
    _app(tmp_path, "aten-0.5.8", "{applications, [kernel]}")
    _app(tmp_path, "gen_batch_server-0.8.8", "{applications, [kernel]}")
    _app(tmp_path, "rabbitmq_management-3.10.8", "{applications, [rabbit]}")
    _app(tmp_path, "rabbitmq_mqtt-3.10.8", "{applications, [rabbit, ranch]}")
    _app(tmp_path, "ranch-2.1.0", "{applications, [kernel]}")
    assert [p.name for p in boot_apps(tmp_path)] == [
        "aten-0.5.8", "cuttlefish-3.0.1", "gen_batch_server-0.8.8", "osiris-1.3.1",
        "ra-2.2.0", "rabbit-3.10.8", "rabbit_common-3.10.8", "rabbitmq_prelaunch-3.10.8",
    ]
