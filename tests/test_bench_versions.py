"""A benchmark's asv version changes exactly when what it measures changes (scripts/bench_versions.py)."""
import copy
import importlib
import json

import pytest

pytest.importorskip("asv_runner")
import bench_versions  # noqa: E402


@pytest.fixture(scope="module")
def current():
    return bench_versions.discover()


@pytest.fixture(scope="module")
def lock():
    return json.loads(bench_versions.LOCK.read_text())


def test_the_committed_versions_match_what_the_benchmarks_measure(current, lock):
    errors, _ = bench_versions.problems(current, lock)
    assert errors == []
    assert all(version is not None for version, _ in current.values())  # none left to asv's source hash
    assert len(current) >= 12


def _changed(current, name, **changes):
    changed = copy.deepcopy(current)
    version, definition = changed[name]
    definition.update(changes.pop("definition", {}))
    changed[name] = (changes.pop("version", version), definition)
    return changed


def test_a_new_definition_under_the_same_version_fails(current, lock):
    name = "bench_stages.TrackThroughput.track_throughput"
    errors, written = bench_versions.problems(_changed(current, name, definition={"unit": "chunks/s"}), lock)
    assert len(errors) == 1 and name in errors[0] and "bump the version" in errors[0]
    assert written[name] == lock[name]  # --update would not record it


def test_a_new_version_for_the_same_definition_fails(current, lock):
    name = "bench_predict.TimePredict.time_predict"
    errors, written = bench_versions.problems(_changed(current, name, version="99"), lock)
    assert len(errors) == 1 and name in errors[0] and "keep the version" in errors[0]
    assert written[name] == lock[name]


def test_a_deliberate_change_is_recorded_by_update(current, lock):
    name = "bench_stages.TrackMFU.track_mfu"
    changed = _changed(current, name, version="3", definition={"repeat": 9})
    errors, written = bench_versions.problems(changed, lock)
    assert [e for e in errors if "--update" not in e] == []
    assert written[name] == {"version": "3", "definition": bench_versions.digest(changed[name][1])}
    assert bench_versions.problems(changed, written)[0] == []


@pytest.mark.parametrize("change, moves", [
    (("PROFILES", "metagenome_bp", (10_000_000,) * 10), "bench_predict."),
    (("METHOD", "samples", 7), "bench_stages."),
])
def test_the_workload_and_the_sampling_method_are_part_of_the_definition(monkeypatch, current, change, moves):
    """A new time_predict workload moves the predict benchmarks' definitions, a new sampling
    method the stage benchmarks', and nothing else: without a version bump, the check fails."""
    from benchmarks import bench_predict, bench_stages, common, sampling

    table, key, value = change
    monkeypatch.setitem(common.PROFILES["full"] if table == "PROFILES" else sampling.METHOD, key, value)
    try:
        importlib.reload(bench_predict)
        importlib.reload(bench_stages)
        after = bench_versions.discover()
    finally:
        monkeypatch.undo()
        importlib.reload(bench_predict)
        importlib.reload(bench_stages)
    moved = {n for n in current if bench_versions.digest(after[n][1]) != bench_versions.digest(current[n][1])}
    assert moved == {n for n in current if n.startswith(moves)}
    errors, _ = bench_versions.problems(after, json.loads(bench_versions.LOCK.read_text()))
    assert len(errors) == len(moved) and all("bump the version" in e for e in errors)
