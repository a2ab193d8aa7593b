#!/usr/bin/env python
"""The scaling prediction (virnucpro/replay.py's predicted_wall) against CPU runs of 2 and 3 workers.

Each ESM-2 range is made to take `--sleep` seconds more (the fault hook's sleep action), so that
ranges cost known, mostly idle time and 2 or 3 workers on a small host can overlap them.  As
the suite does on a GPU host (track_predicted_speedup): the tiny preset runs in one process
(the 1-GPU run's shape) and its run.json files are replayed for N ranks.  Then it runs with
`--cpu-workers` 2 and 3 and compares: predicted wall(N) = wall(1) - replay(1) + replay(N) + spawn(N),
spawn(N) measured on the short input with `--cpu-workers N` against in-process
(replay.measured_spawn); beside it, the model a 1-GPU host must use: one spawned worker's
start-up (N of them share the cores) plus the rest of its cost (replay.spawn_cost).
Every run is made `--repeat` times and its median wall taken; the runs go in rounds (each round
one run of every configuration: the spawn probe's, then each workload's 1, 2 and 3 workers), so
that a host whose speed drifts over minutes moves all of them alike, as asv's interleaved rounds
do.  Beside each wall, the run's own
record: the seconds before the queue and the end of its last range from the queue's start, so
that an error can be told apart into start-up, queue and the end of the run.

Workloads: KK037166 and edge_cases (two inputs of similar size) with each `--sleep`, and, with
`--unequal`, SRR492066 (an 81 kb contig, four times as many ranges) between them.

  scripts/probes/validate_replay.py --sleep 0.3 0.6 --unequal [--out docs/perf/FILE.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
EVEN = [DATA / "KK037166.fna", DATA / "edge_cases.fa"]
UNEQUAL = [DATA / "KK037166.fna", DATA / "SRR492066.fna", DATA / "edge_cases.fa"]
SHORT = [DATA / "edge_cases.fa"]  # the spawn probe's input


def run(inputs, out: Path, workers: int | None, sleep: float, every: int, spawn_one: bool = False,
        marks: Path | None = None) -> float:
    """Wall seconds of one `predict` in a subprocess, as a user runs it; workers None: in-process;
    `marks`: its VIRNUCPRO_TRACE file."""
    cmd = [sys.executable, "-m", "virnucpro", "predict", *map(str, inputs), "-l", "300", "--random-weights",
           "--preset", "tiny", "--device", "cpu", "--no-progress", "--checkpoint-every", str(every), "--force",
           "-o", str(out)] + ([] if workers is None else ["--cpu-workers", str(workers)])
    env = {**os.environ, "VIRNUCPRO_SPAWN_ONE": "1" if spawn_one else "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if sleep:
        env["VIRNUCPRO_TEST_FAULT"] = f"esm2:*:sleep{sleep}"
    if marks is not None:
        env["VIRNUCPRO_TRACE"] = str(marks)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


def recorded(out: Path) -> dict:
    """The run's own record: seconds before the queue, and the end of its last range."""
    runs = [json.loads(p.read_text()) for p in out.glob("*/run.json")]
    return {"before_queue": runs[0]["queue"]["before_queue_seconds"],
            "last_range_end": max(x["end"] for r in runs for x in r["queue"]["ranges"])}


def median(runs: list) -> tuple[float, list, Path]:
    """The median wall of (wall, out) runs, all walls, and the median run's OUT."""
    runs = sorted(runs)
    wall, out = runs[len(runs) // 2]
    return wall, [round(w, 3) for w, _ in runs], out


def rounds(plans, every: int, workers, repeat: int, tmp: Path) -> tuple[dict, dict]:
    """Every run, `repeat` rounds: the spawn probe (short input: in-process, one spawned worker,
    each N of `workers`), then each workload in-process and with each N.  Returns the probe's
    {kind: [(wall, trace)]} and {(plan, N or None): [(wall, out)]}."""
    kinds = {"in_process": {}, "one": {"spawn_one": True}, **{n: {"workers": n} for n in workers}}
    probe: dict = {k: [] for k in kinds}
    runs: dict = {}
    for i in range(repeat):
        for kind, how in kinds.items():
            marks = tmp / f"spawn-trace-{kind}-{i}.txt"
            wall = run(SHORT, tmp / "spawn", how.get("workers"), 0.0, 4, spawn_one=how.get("spawn_one", False),
                       marks=marks)
            probe[kind].append((wall, marks))
        for p, (inputs, sleep) in enumerate(plans):
            for n in (None, *workers):
                out = tmp / f"w{n or 1}-{p}.{i}"
                runs.setdefault((p, n), []).append((run(inputs, out, n, sleep, every), out))
    return probe, runs


def spawn_seconds(probe: dict, workers=(2, 3)) -> dict:
    """What spawning costs, from the probe's runs of the short input (replay.measured_spawn: the
    start-up from the command's torch import to the last rank's models, and the rest after the
    last result written, spawned against in-process): for each N of `workers`, `--cpu-workers N`
    (measured where N workers can run, as on the CPU); and one spawned worker
    (VIRNUCPRO_SPAWN_ONE=1), as a 1-GPU host measures it."""
    from virnucpro import replay

    each = {n: replay.measured_spawn(probe[n], probe["in_process"]) for n in ("one", *workers)}
    return {"one_worker": each["one"]._asdict(),
            "workers": {str(n): round(sum(each[n]), 3) for n in workers},
            "terms": {str(n): each[n]._asdict() for n in workers},
            "walls": {str(k): [round(w, 3) for w, _ in v] for k, v in probe.items()}}


def validate(plan: int, inputs, sleep: float, every: int, workers, runs: dict, spawn: dict, cores: int) -> dict:
    """`spawn`: spawn_seconds' figures: the measured cost of N workers is what the prediction adds;
    beside it, what one spawned worker's cost (replay.spawn_cost, as on a 1-GPU host) would add."""
    from virnucpro import replay

    one_worker = replay.Spawn(**spawn["one_worker"])
    wall1, walls1, one = median(runs[(plan, None)])
    measured, before, ahead = replay.measured(one)
    base = replay.replay(measured, 1, before, ahead).wall
    rows = [{"workers": "1 (in-process)", "measured_wall": round(wall1, 3), "walls": walls1,
             "replay_wall": round(base, 3), "recorded": recorded(one)}]
    for n in workers:
        s = replay.replay(measured, n, before, ahead)
        predicted = replay.predicted_wall(measured, n, wall1, before, ahead, spawn["workers"][str(n)])
        modelled = replay.predicted_wall(measured, n, wall1, before, ahead, replay.spawn_cost(one_worker, n, cores))
        wall, walls, out = median(runs[(plan, n)])
        rows.append({"workers": n, "measured_wall": round(wall, 3), "walls": walls,
                     "predicted_wall": round(predicted, 3), "error": round(predicted / wall - 1, 4),
                     "measured_speedup": round(wall1 / wall, 3), "predicted_speedup": round(wall1 / predicted, 3),
                     "terms": {"kept_from_the_1_process_run": round(wall1 - base, 3), "replayed_queue": round(s.wall, 3),
                               "spawn_measured": spawn["workers"][str(n)]},
                     "from_one_worker": {"spawn_cost": round(replay.spawn_cost(one_worker, n, cores), 3),
                                         "predicted_wall": round(modelled, 3), "error": round(modelled / wall - 1, 4)},
                     "recorded": recorded(out), "replayed": {"before_queue": before, "last_range_end": round(
                         max(e for _, _, e in s.ranges) - before, 4)}})
    return {"inputs": [p.name for p in inputs], "fault": f"esm2:*:sleep{sleep}", "checkpoint_every": every,
            "ranges": sum(len(m.ranges) for m in measured), "runs": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sleep", type=float, nargs="+", default=[0.3], help="seconds added to every ESM-2 range")
    ap.add_argument("--unequal", action="store_true", help="also the workload of unequal inputs (first --sleep)")
    ap.add_argument("--every", type=int, default=4, help="--checkpoint-every: chunks per range")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each size; the median wall is taken")
    ap.add_argument("--out", type=Path, help="write the figures here as JSON (else stdout only)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    cores = len(os.sched_getaffinity(0))
    plans = [(EVEN, s) for s in args.sleep] + ([(UNEQUAL, args.sleep[0])] if args.unequal else [])
    with tempfile.TemporaryDirectory(prefix="virnucpro-replay-") as tmp:
        probe, runs = rounds(plans, args.every, (2, 3), args.repeat, Path(tmp))
        spawn = spawn_seconds(probe)
        workloads = [validate(p, inputs, sleep, args.every, (2, 3), runs, spawn, cores)
                     for p, (inputs, sleep) in enumerate(plans)]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "virnucpro"]).returncode == 1
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "commit": commit + ("+dirty" if dirty else ""),
              "machine": {"host": platform.node(), "cores": cores, "platform": platform.platform(),
                          "cpu": next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                                       .splitlines() if ln.startswith("model name")), platform.processor())},
              "formula": "wall(1) - replay(1) + replay(N) + spawn(N), spawn(N) measured with --cpu-workers N on the "
                         "short input (replay.measured_spawn: from the torch import to the last rank's models, "
                         "and from the last result written to the end); from_one_worker: spawn(N) = "
                         "startup * max(1, N / cores) + rest of one spawned worker (what a 1-GPU host can measure)",
              "spawn": spawn, "repeat": args.repeat, "interleaved": True, "workloads": workloads}
    text = json.dumps(result, indent=1) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    errors = [(w["inputs"], w["fault"], r["workers"], r["error"]) for w in workloads for r in w["runs"] if "error" in r]
    for e in errors:
        print(f"{'+'.join(e[0])} {e[1]} {e[2]} workers: {e[3]:+.1%}")
    print(f"largest error of the prediction: {max(abs(e[3]) for e in errors):.1%} (target: within 5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
