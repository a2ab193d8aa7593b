#!/usr/bin/env python
"""Where track_predicted_speedup's predicted N-GPU wall goes, term by term (issue 29's verdict):
the suite's own 1-GPU run (time_predict's command and workload, warmed up as the suite warms
it), replayed by virnucpro/replay.py for 2, 4 and 8 ranks with the spawn cost measured as the
suite measures it (bench_predict._spawn), split by replay.terms.  Writes JSON to --out.

  python scripts/probes/predicted_terms.py --out $OUT/predicted_terms.json [--commit SHA]
  (on a device: wheels from .whl as scripts/gpu_session.sh installs them, its bytecode settings)
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--commit", help="the commit measured, where the tree has no .git (a device's copy)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_predict, common
    from virnucpro import replay

    bench_predict._warm_up()
    out = tempfile.mkdtemp(prefix="virnucpro-terms-")
    try:
        wall = bench_predict._timed_run(common.predict_command(common.workload()["predict_files"], out, 1),
                                        common.timeout())
        run = bench_predict._measured(out, wall)
        per_input = [json.loads(p.read_text()) for p in sorted(Path(out).glob("*/run.json"))]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    spawn = bench_predict._spawn(common.timeout())
    cores = common.usable_cores()
    inputs = [replay.Input(i["ranges"], i["write"]) for i in run["inputs"]]
    rows = {str(n): replay.terms(inputs, n, wall, run["before"], run["ahead"],
                                 replay.spawn_cost(replay.Spawn(*spawn), n, cores)) for n in (1, *common.N_GPUS[1:])}
    for r in rows.values():
        r["speedup"] = wall / r["predicted_wall"]
    commit = args.commit or subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip()
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
              "gpu": gpu, "cores": cores, "wall": wall, "ahead": run["ahead"], "spawn": spawn._asdict(),
              "inputs": [{"input": r.get("input"), "ranges": len(i.ranges), "range_seconds": round(sum(i.ranges), 3),
                          "each_range": [round(x, 4) for x in i.ranges],
                          "write": round(i.write, 3), "seconds": r.get("seconds"),
                          "startup_seconds": r.get("startup_seconds")} for r, i in zip(per_input, inputs)],
              "terms": {n: {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for n, r in rows.items()}}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for n, r in result["terms"].items():
        print(n, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
