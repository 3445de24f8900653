"""A watch update is copied against the object's last copy: what did not change is
taken from it, so a standby (which receives every status write of the leader) copies a
status, not the whole object, per event; the result is what a full copy would be."""

from typing import Any

from celery_operator.controllers.watched import LAST_APPLIED, slim


def _body(rv: str, phase: str, task: str = "demo.add") -> dict[str, Any]:
    return {
        "apiVersion": "celeryoperator.dev/v1alpha1",
        "metadata": {
            "name": "t", "uid": "u", "resourceVersion": rv,
            "managedFields": [{"manager": "op", "time": rv}],
            "annotations": {LAST_APPLIED: '{"spec": {}}', "team": "a"},
            "labels": {"app": "x"},
        },
        "spec": {"task": {"name": task, "args": [1, 2]}},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_a_status_update_keeps_the_unchanged_parts_of_the_last_copy() -> None:
    previous = slim(_body("7", "Queued"))
    update = _body("8", "Succeeded")
    kept = slim(update, previous)
    assert kept == slim(update)  # the same as a full copy
    assert kept["spec"] is previous["spec"]
    assert kept["metadata"]["labels"] is previous["metadata"]["labels"]
    assert kept["status"] == {"phase": "Succeeded",
                              "conditions": [{"type": "Ready", "status": "True"}]}
    assert kept["metadata"]["resourceVersion"] == "8"


def test_what_changed_is_copied_and_shares_nothing_with_the_update() -> None:
    previous = slim(_body("7", "Queued"))
    update = _body("9", "Queued", task="demo.mul")
    kept = slim(update, previous)
    assert kept["spec"] == {"task": {"name": "demo.mul", "args": [1, 2]}}
    assert kept["spec"] is not update["spec"]
    assert kept["spec"]["task"] is not update["spec"]["task"]
    kept["spec"]["task"]["name"] = "changed"
    assert update == _body("9", "Queued", task="demo.mul")
    assert previous == slim(_body("7", "Queued"))  # the last copy is not changed either


def test_an_update_still_drops_managed_fields_and_kubectls_copy() -> None:
    kept = slim(_body("8", "Succeeded"), slim(_body("7", "Queued")))
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"team": "a"}


def test_a_part_removed_by_the_update_is_gone_from_the_copy() -> None:
    update = _body("8", "Queued")
    del update["metadata"]["labels"], update["status"]
    kept = slim(update, slim(_body("7", "Queued")))
    assert "labels" not in kept["metadata"] and "status" not in kept


def test_a_status_that_gained_a_condition_keeps_the_others_from_the_last_copy() -> None:
    previous = slim(_body("7", "Queued"))
    update = _body("8", "Started")
    update["status"]["conditions"].append({"type": "Stalled", "status": "False"})
    kept = slim(update, previous)
    assert kept == slim(update)
    conditions = kept["status"]["conditions"]
    assert conditions[0] is previous["status"]["conditions"][0]
    assert conditions[1] == {"type": "Stalled", "status": "False"}
    assert conditions[1] is not update["status"]["conditions"][1]


def test_a_value_that_changed_type_is_copied_as_it_is_now() -> None:
    previous = slim(_body("7", "Queued"))
    update = _body("8", "Queued")
    update["status"]["conditions"] = {"odd": ["shape"]}  # status is writable by anyone
    update["spec"]["task"]["args"] = "1, 2"
    kept = slim(update, previous)
    assert kept == slim(update)
