#!/usr/bin/env python3
"""The bytes this host gives, beside what decides them (docs/RELIABILITY.md, "Across hosts").

    python scripts/host_bits.py [--json FILE] [--record NAME]

Runs `virnucpro predict --random-weights --preset tiny --device cpu --keep-intermediate` on
tests/data/KK037166.fna (-l 500) and tests/data/edge_cases.fa (-l 300), prints the SHA-256 of each
result file, the CPU (vendor, model, ISA flags), torch's CPU dispatch path (ATen capability), MKL's
version and CNR settings and the threads, and names the hosts recorded in docs/perf/host_bits.json
that gave the same bytes.  A report, not a test: on one host the bytes do not depend on the layout
(tests/test_layout.py); across CPU families they may differ, and pinning them costs more than
2x on the CPU (RELIABILITY.md).  --record NAME adds this host to the file.  Exit status 0, or 2
when a run fails.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "docs" / "perf" / "host_bits.json"
CASES = {"KK037166 -l 500": ("KK037166.fna", "500"), "edge_cases -l 300": ("edge_cases.fa", "300")}
FILES = ("prediction_results.txt", "prediction_results_highestscore.csv", "contig_summary.tsv",
         "skipped.tsv", "intermediate/features.npy")
ISA = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile")

FACTS = """
import json, os, re, torch, virnucpro.settings as s
info = torch.__config__.parallel_info()
mkl = re.search(r"Math Kernel Library Version ([0-9.]+)", info)
print(json.dumps({"torch": torch.__version__, "aten_capability": torch.backends.cpu.get_cpu_capability(),
                  "mkl": mkl.group(1).strip() if mkl else ("yes" if torch.backends.mkl.is_available() else "no"),
                  "threads": s.cpu_threads(), **{k: os.environ.get(k, "") for k in
                  ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")}}))
"""


def cpu() -> dict:
    """Vendor, model and the ISA extensions that pick kernels, from /proc/cpuinfo."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {"vendor": fields.get("vendor_id", platform.processor()), "model": fields.get("model name", ""),
            "family": fields.get("cpu family", ""), "isa": [f for f in ISA if f in flags], "arch": platform.machine()}


def facts(env: dict) -> dict:
    """What decides the bits besides the CPU: torch, its dispatch path, MKL, CNR settings, threads."""
    p = subprocess.run([sys.executable, "-c", FACTS], env=env, capture_output=True, text=True, timeout=300)
    if p.returncode:
        raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "facts probe failed")
    return json.loads(p.stdout)  # the environment as virnucpro runs with it (it sets MKL_CBWR)


def hashes(work: Path, env: dict) -> dict:
    """{case: {file: sha256}} of the tiny preset's result files."""
    out = {}
    for case, (name, length) in CASES.items():
        dest = work / case.split()[0]
        cmd = [sys.executable, "-m", "virnucpro", "predict", str(ROOT / "tests" / "data" / name), "-l", length,
               "-o", str(dest), "--random-weights", "--preset", "tiny", "--device", "cpu", "--no-progress",
               "--keep-intermediate"]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if p.returncode:
            raise RuntimeError(f"{case}: virnucpro exited {p.returncode}: {p.stderr.strip()[-500:]}")
        folder = dest / Path(name).stem
        out[case] = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in FILES}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the report as JSON to this file")
    ap.add_argument("--record", metavar="NAME", help=f"add this host to {RECORDED.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    env.pop("VIRNUCPRO_TEST_FAULT", None)
    try:
        with tempfile.TemporaryDirectory(prefix="host-bits-") as work:
            report = {"cpu": cpu(), "decided_by": facts(env), "sha256": hashes(Path(work), env)}
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        print(f"host_bits: {e}", file=sys.stderr)
        return 2
    recorded = json.loads(RECORDED.read_text()) if RECORDED.exists() else []
    report["same_bytes_as"] = [r["name"] for r in recorded if r["sha256"] == report["sha256"]]
    c, d = report["cpu"], report["decided_by"]
    print(f"CPU: {c['vendor']} {c['model']} (family {c['family']}, {c['arch']}); ISA: {' '.join(c['isa'])}")
    print(f"torch {d['torch']}, ATen dispatch {d['aten_capability']}, MKL {d['mkl']}, threads {d['threads']}, "
          f"MKL_CBWR={d['MKL_CBWR'] or '-'} MKL_ENABLE_INSTRUCTIONS={d['MKL_ENABLE_INSTRUCTIONS'] or '-'}")
    for case, files in report["sha256"].items():
        for name, digest in files.items():
            print(f"  {case:18s} {name:38s} {digest}")
    print("same bytes as: " + (", ".join(report["same_bytes_as"]) or
                               f"no host recorded in {RECORDED.relative_to(ROOT)} (other bytes, or a new host)"))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.record:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip()
        except OSError:
            commit = ""
        entry = {"name": args.record, "date": datetime.date.today().isoformat(), "commit": commit,
                 **{k: report[k] for k in ("cpu", "decided_by", "sha256")}}
        recorded = [r for r in recorded if r["name"] != args.record] + [entry]
        RECORDED.write_text(json.dumps(recorded, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
