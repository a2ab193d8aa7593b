#!/usr/bin/env python
"""The replay predictor (virnucpro/replay.py) against measurements, on the CPU.

Each ESM-2 range is made to take `--sleep` seconds more (the fault hook's sleep action), so that
ranges cost known, mostly idle time and 2 or 3 workers on a small host can overlap them.  The
tiny preset runs once with 1 worker (`--cpu-workers 1`); its run.json files are replayed for
2 and 3 workers; then it runs with 2 and 3 workers.  Each prediction keeps what the 1-worker run
spent outside its recorded schedule (the end of the process, after the last result):
predicted wall(N) = measured wall(1) - replay(1) + replay(N).  Each run is made `--repeat` times
and its median wall taken.  Beside each wall, what the run recorded: the seconds before the queue
(start-up: N workers spawned and their process group) and the end of its last range, from the
queue's start, so that an error can be told apart into start-up, queue and the end of the run.

  scripts/probes/validate_replay.py [--out docs/perf/replay_validation_cpu.json]
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
INPUTS = [DATA / "KK037166.fna", DATA / "edge_cases.fa"]


def run(inputs, out: Path, workers: int, sleep: float, every: int) -> float:
    """Wall seconds of one `predict` in a subprocess, as a user runs it."""
    cmd = [sys.executable, "-m", "virnucpro", "predict", *map(str, inputs), "-l", "300", "--random-weights",
           "--preset", "tiny", "--device", "cpu", "--no-progress", "--checkpoint-every", str(every),
           "--cpu-workers", str(workers), "-o", str(out)]
    env = {**os.environ, "VIRNUCPRO_TEST_FAULT": f"esm2:*:sleep{sleep}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
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


def median_run(inputs, out: Path, workers: int, sleep: float, every: int, repeat: int) -> tuple[float, dict]:
    """The median wall of `repeat` runs, and that run's record (its OUT kept at `out`)."""
    walls = []
    for i in range(repeat):
        wall = run(inputs, out.with_name(f"{out.name}.{i}"), workers, sleep, every)
        walls.append((wall, i))
    wall, i = sorted(walls)[len(walls) // 2]
    out.with_name(f"{out.name}.{i}").rename(out)
    return wall, recorded(out)


def validate(sleep: float = 0.3, every: int = 4, workers=(2, 3), inputs=INPUTS, repeat: int = 3) -> dict:
    sys.path.insert(0, str(ROOT))
    from virnucpro import replay

    rows = []
    with tempfile.TemporaryDirectory(prefix="virnucpro-replay-") as tmp:
        one = Path(tmp) / "w1"
        wall1, rec = median_run(inputs, one, 1, sleep, every, repeat)
        measured, before, ahead = replay.measured(one)
        base = replay.replay(measured, 1, before, ahead).wall
        rows.append({"workers": 1, "measured_wall": round(wall1, 3), "replay_wall": round(base, 3), "recorded": rec})
        for n in workers:
            s = replay.replay(measured, n, before, ahead)
            predicted = replay.predicted_wall(measured, n, wall1, before, ahead)
            wall, rec = median_run(inputs, Path(tmp) / f"w{n}", n, sleep, every, repeat)
            rows.append({"workers": n, "measured_wall": round(wall, 3), "predicted_wall": round(predicted, 3),
                         "error": round(predicted / wall - 1, 4),
                         "measured_speedup": round(wall1 / wall, 3), "predicted_speedup": round(wall1 / predicted, 3),
                         "recorded": rec, "replayed": {"before_queue": before, "last_range_end": round(
                             max(e for _, _, e in s.ranges) - before, 4)}})
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "virnucpro"]).returncode == 1
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit + ("+dirty" if dirty else ""),
            "machine": {"host": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "workload": {"inputs": [p.name for p in inputs], "preset": "tiny", "chunk_len": 300,
                         "checkpoint_every": every, "fault": f"esm2:*:sleep{sleep}",
                         "ranges": sum(len(m.ranges) for m in measured), "repeat": repeat},
            "runs": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sleep", type=float, default=0.3, help="seconds added to every ESM-2 range")
    ap.add_argument("--every", type=int, default=4, help="--checkpoint-every: chunks per range")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each size; the median wall is taken")
    ap.add_argument("--out", type=Path, help="write the figures here as JSON (else stdout only)")
    args = ap.parse_args(argv)
    result = validate(args.sleep, args.every, repeat=args.repeat)
    text = json.dumps(result, indent=1) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    worst = max(abs(r["error"]) for r in result["runs"] if "error" in r)
    print(f"largest error of the prediction: {worst:.1%} (target: within 10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
