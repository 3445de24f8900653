"""What the engines keep of each watched object (memory: one entry per object)."""

from celery_operator.controllers.watched import LAST_APPLIED, Watched, slim


def _body() -> dict:
    return {
        "metadata": {
            "name": "t", "uid": "u", "resourceVersion": "7",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "annotations": {LAST_APPLIED: '{"spec": {}}', "team": "a"},
            "labels": {"app": "x"},
        },
        "spec": {"task": "demo.add"},
        "status": {"phase": "Succeeded"},
    }


def test_slim_drops_managed_fields_and_kubectls_copy_but_keeps_the_rest() -> None:
    body = _body()
    kept = slim(body)
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"team": "a"}
    assert kept["metadata"]["labels"] == {"app": "x"}
    assert kept["metadata"]["resourceVersion"] == "7"
    assert kept["spec"] == body["spec"] and kept["status"] == body["status"]


def test_slim_does_not_change_the_body_it_was_given() -> None:
    body = _body()
    slim(body)
    assert body == _body()


def test_slim_of_a_body_with_nothing_to_drop_is_an_equal_copy() -> None:
    body = {"metadata": {"name": "t"}, "spec": {}}
    kept = slim(body)
    assert kept == body and kept is not body


def test_slim_is_a_deep_copy_sharing_nothing_mutable_with_the_body() -> None:
    body = _body()
    kept = slim(body)
    kept["spec"]["task"] = "changed"
    kept["metadata"]["labels"]["app"] = "y"
    assert body == _body()


def test_a_packed_body_reads_back_equal_and_keeps_its_phase_for_counting() -> None:
    entry: Watched[str] = Watched(slim(_body()))
    assert entry.parsed(lambda spec: str(spec["task"])) == "demo.add"
    entry.pack()
    assert entry.packed and isinstance(entry.held, bytes)
    assert entry.spec is None  # dropped with the dicts: parsed again when asked for
    assert entry.phase == "Succeeded" and entry.version == 7
    assert entry.packed  # counting phases does not decode it
    assert entry.body == slim(_body())
    assert not entry.packed
    assert entry.parsed(lambda spec: str(spec["task"])) == "demo.add"


def test_a_body_json_cannot_hold_stays_unpacked() -> None:
    for odd in (2**70, "\ud800"):
        body = slim(_body())
        body["spec"]["args"] = [odd]
        entry: Watched[str] = Watched(body)
        entry.pack()
        assert not entry.packed and entry.body["spec"]["args"] == [odd]
