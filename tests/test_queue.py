"""One queue of ranges over all inputs (virnucpro/workqueue.py), on CPU workers (gloo): a slow rank
takes fewer ranges, a dead one fails the run and its saved ranges are reused, and no rank idles
while ranges remain.  Ranges are given weight with the fault hook's sleep (virnucpro/faults.py)."""
import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from conftest import DATA, ROOT
from test_reliability import INPUTS, OPTS, STEMS, assert_same_results, launch, predict, saved
from virnucpro import checkpoint, faults, settings


def timeline(out, stems=STEMS) -> dict:
    """{stem: its ranges' records from run.json, in queue order}."""
    return {s: sorted(json.loads((out / s / "run.json").read_text())["queue"]["ranges"], key=lambda x: x["item"])
            for s in stems}


def run_with(out, fault, *extra, inputs=INPUTS, opts=OPTS):
    p = subprocess.run([sys.executable, "-m", "virnucpro", "predict", *inputs, *opts, "-o", str(out), *extra],
                       env={**os.environ, faults.ENV: fault}, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stderr


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "out"
    assert predict(out) == 0
    return out


def test_the_queue_is_recorded_in_run_json(baseline):
    for stem, ranges in timeline(baseline).items():
        run = json.loads((baseline / stem / "run.json").read_text())
        q = run["queue"]
        assert len(ranges) == run["checkpoint"]["ranges"] == len(checkpoint.ranges(run["counts"]["chunks"], 9))
        assert [x["range"] for x in ranges] == [list(r) for r in checkpoint.ranges(run["counts"]["chunks"], 9)]
        assert [x["item"] for x in ranges] == list(range(q["first_item"], q["first_item"] + len(ranges)))
        assert {x["rank"] for x in ranges} == {0} and q["ranks"] == 1
        assert all(x["claimed"] <= x["start"] <= x["end"] for x in ranges)
        assert sum(x["orfs"] for x in ranges) == run["counts"]["orfs"]
        assert all(x["esm2_tokens"] > x["orfs"] for x in ranges if x["orfs"])
        assert q["before_queue_seconds"] > 0 and q["merge_seconds"] >= 0 and run["seconds"]["write_results"] > 0
    # one process: every range of the first input before any of the second, and in order
    first, second = timeline(baseline).values()
    assert first[-1]["end"] <= second[0]["start"]


@pytest.mark.parametrize("early", ["0", "1"], ids=["spawned", "forked-early"])
def test_a_slow_rank_takes_fewer_ranges_and_the_results_are_the_same(baseline, tmp_path, monkeypatch, early):
    monkeypatch.setenv(settings.EARLY_WORKERS, early)  # workers spawned, or forked from the fork server
    out = tmp_path / "out"
    err = run_with(out, "esm2:*:sleep0.6@1", "--cpu-workers", "2")
    # the workers and the launcher leave without the interpreter's teardown: nothing of it on stderr
    # (a resource tracker's leaked semaphores, a worker's traceback), only each input's line and the warning
    lines = err.splitlines()
    assert len(lines) == len(STEMS) + 1 and lines[-1].startswith("warning: random weights"), err
    assert all(" -> " in ln for ln in lines[:-1]), err
    ranks = Counter(x["rank"] for ranges in timeline(out).values() for x in ranges)
    assert ranks[1] < ranks[0], ranks
    assert_same_results(out, baseline)


def test_a_rank_killed_mid_queue_fails_the_run_and_resume_reuses_every_saved_range(baseline, tmp_path):
    out = tmp_path / "out"
    t0 = time.monotonic()
    # rank 0 slowed so that rank 1 surely reaches its second range, where it dies
    p = launch(out, "esm2:*:sleep0.3@0,esm2:2@1", "--cpu-workers", "2")
    _, err = p.communicate(timeout=120)  # a survivor waiting forever on the dead rank's count would time out here
    assert p.returncode == 1 and "worker process 1 was killed by SIGKILL" in err, err[-2000:]
    assert time.monotonic() - t0 < 90
    kept = {s: saved(out, s) for s in STEMS if not (out / s).is_dir()}
    assert sum(map(len, kept.values())) >= 1, kept  # at least rank 1's first range
    assert predict(out, "--resume") == 0
    for stem, files in kept.items():
        run = json.loads((out / stem / "run.json").read_text())
        assert run["checkpoint"]["reused"] == len(files)
        assert sum(bool(x.get("reused")) for x in run["queue"]["ranges"]) == len(files)
    assert_same_results(out, baseline)


def test_no_rank_idles_while_ranges_remain_with_inputs_of_very_different_sizes(tmp_path):
    """One input of 17 ranges, then four of one range each: under a barrier per input a rank
    would wait for the other at the end of every input; with one queue it goes on."""
    tiny = []
    for i in range(4):
        seq = (DATA / "KK037166.fna").read_text().split("\n", 1)[1].replace("\n", "")[i * 1000:(i + 1) * 1000]
        tiny.append(tmp_path / f"tiny{i}.fa")
        tiny[-1].write_text(f">t{i}\n{seq}\n")
    out = tmp_path / "out"
    opts = ["-l", "300", "--random-weights", "--preset", "tiny", "--device", "cpu", "--no-progress",
            "--checkpoint-every", "4"]
    run_with(out, "esm2:*:sleep0.4", "--cpu-workers", "2", inputs=[str(DATA / "KK037166.fna"), *map(str, tiny)],
             opts=opts)
    stems = ["KK037166", *(p.stem for p in tiny)]
    records = [x for ranges in timeline(out, stems).values() for x in ranges]
    assert len(records) == 17 + 4
    last_claim = max(x["claimed"] for x in records)
    slack = 0.2  # a claim is a store round trip; a range takes over 0.4 s
    for rank in (0, 1):
        mine = sorted((x for x in records if x["rank"] == rank), key=lambda x: x["start"])
        assert len(mine) >= 5
        gaps = [b["claimed"] - a["end"] for a, b in zip(mine, mine[1:])]
        assert max(gaps) < slack, (rank, gaps)  # from one range straight to the next, across inputs
        assert mine[-1]["end"] > last_claim - slack  # busy until the queue ran dry
    # ranges of the large input and of the tiny ones were scored at the same time
    assert {x["rank"] for x in records if x["item"] >= 17} == {0, 1}


def test_the_replay_validation_runs_at_tiny_size(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts" / "probes"))
    try:
        import validate_replay
    finally:
        sys.path.remove(str(ROOT / "scripts" / "probes"))
    plans = [(validate_replay.EVEN, 0.05)]
    probe, runs = validate_replay.rounds(plans, every=16, workers=(2,), repeat=1, tmp=tmp_path)
    assert set(runs) == {(0, None), (0, 2)} and all(len(r) == 1 for r in runs.values())
    spawn = validate_replay.spawn_seconds(probe, workers=(2,))
    assert set(spawn["walls"]) == {"in_process", "one", "2"} and all(len(w) == 1 for w in spawn["walls"].values())
    spawn = {"one_worker": {"startup": 0.5, "rest": 0.25}, "workers": {"2": 1.5}}
    got = validate_replay.validate(0, *plans[0], every=16, workers=(2,), runs=runs, spawn=spawn, cores=1)
    assert [r["workers"] for r in got["runs"]] == ["1 (in-process)", 2]
    assert got["ranges"] == 5 + 4  # 67 and 52 chunks in ranges of 16
    two = got["runs"][1]
    assert two["predicted_wall"] > 0 and two["measured_wall"] > 0
    assert two["error"] == pytest.approx(two["predicted_wall"] / two["measured_wall"] - 1, abs=1e-3)
    terms = two["terms"]
    assert terms["spawn_measured"] == 1.5
    assert two["predicted_wall"] == pytest.approx(terms["kept_from_the_1_process_run"] + terms["replayed_queue"]
                                                  + 1.5, abs=2e-3)
    # a 1-GPU host's model: 0.5 s of start-up for each of 2 ranks on 1 core, and 0.25 s
    assert two["from_one_worker"]["spawn_cost"] == 1.25


def test_read_ahead_takes_each_range_as_the_one_before_ends_and_keeps_the_bytes(baseline, tmp_path):
    """The GPU's path (stream, read-ahead: the next range is taken and tokenised while one is
    scored), run on the CPU in one process: ranges in queue order, back to back, and the same bytes."""
    from virnucpro import pipeline

    opts = pipeline.Options(chunk_len=300, random_weights=True, preset="tiny", device="cpu", progress=False,
                            stream=True)
    out = tmp_path / "out"
    pipeline.Engine(opts).predict(INPUTS, out, keep_intermediate=True, every=9)
    ranges = [x for stem in STEMS for x in timeline(out)[stem]]
    assert json.loads((out / STEMS[0] / "run.json").read_text())["queue"]["ahead"] is True
    assert [x["item"] for x in ranges] == list(range(len(ranges)))
    # read ahead, a range is taken while the one before is scored, and begun as that one ends
    assert all(b["claimed"] <= a["end"] and b["start"] >= a["end"] for a, b in zip(ranges, ranges[1:]))
    assert_same_results(out, baseline)
