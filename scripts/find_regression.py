#!/usr/bin/env python3
"""Which commit made it slower: bisect the first-parent commits from GOOD to BAD for the benchmarks
matching REGEX that compare_commits flags between the two ends (suite/bisect.py).

    find_regression.py GOOD BAD --bench REGEX --machine NAME [--work DIR] [--reuse DIR ...]
                       [--min-rounds 2] [--max-rounds 6] [--json FILE] [--markdown FILE] [--no-run]

Each measurement is one `asv run` of one commit (suite/asvrun.run_commit, `--bench REGEX
--append-samples`), into WORK/results: rounds of a commit pool their samples, and a probe is
measured in rounds beside the two commits around it.  Results already measured for a commit
(--reuse folders: results/ by default, earlier probes) are pooled in.  WORK/state.json lists every
run made, its seconds and exit status, so the same command, given again (a host whose calls are
cut at 10 minutes), goes on where it stopped: the search replays its decisions from the results
and measures only what is missing.  A commit whose run fails, or whose benchmarks all fail, is
skipped with a note.  Exit status: 0 the search ended (whatever it found), 2 unusable arguments,
refs or thresholds, 3 stopped by --max-seconds before it ended (give the command again).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from suite import ROOT, asvrun, commits, thresholds
from suite.bisect import Search
from suite.results import DataError, method_of
from suite.verdicts import compare, load, pooled


class OutOfTime(Exception):
    """--max-seconds is spent: the state is saved and the same command goes on."""


class Measured:
    """The runs of this search (WORK/state.json) and the results they and --reuse hold."""

    def __init__(self, args):
        self.args, self.work = args, Path(args.work)
        self.results = self.work / "results"
        self.state_path = self.work / "state.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {"runs": []}
        self.cfg = thresholds.load(args.thresholds)
        self.pattern = re.compile(args.bench)
        self._rows: dict = {}
        self._loaded: dict = {}  # (folder, commit) -> verdicts.load's, None where it has none
        self.started = time.monotonic()
        self.registered = False

    def save(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(self.state, indent=1) + "\n")

    def rounds(self, sha: str) -> int:
        if self.skipped(sha):
            return 0
        here = sum(r["commit"] == sha and r["rc"] == 0 for r in self.state["runs"])
        return here + sum(bool(self._load(d, sha)) for d in self.args.reuse)

    def skipped(self, sha: str) -> str | None:
        return self.state.get("skipped", {}).get(sha)

    def _load(self, folder, sha):
        """A commit's results in one folder, read once until this search adds to them."""
        if (folder, sha) not in self._loaded:
            try:
                self._loaded[(folder, sha)] = load(folder, self.args.machine, sha)
            except DataError:
                self._loaded[(folder, sha)] = None
        return self._loaded[(folder, sha)]

    def measure(self, shas: list) -> None:
        if self.args.no_run:
            for sha in shas:  # nothing more can come: what is there decides
                self.state.setdefault("skipped", {}).setdefault(sha, "not measured (--no-run)")
            return
        conf = asvrun.asv_config(self.results, into=self.work, root=self.args.repo)
        if not self.registered:
            gpu, num_gpus, _ = asvrun.gpu_facts(self.args.python)
            asvrun.register_machine(self.args.machine, gpu, num_gpus, self.args.machine_file)
            self.registered = True
        for sha in shas:
            if self.args.max_seconds and time.monotonic() - self.started > self.args.max_seconds:
                raise OutOfTime()
            t0 = time.monotonic()
            rc = asvrun.run_commit(sha, self.args.python, self.args.machine, ["--bench", self.args.bench,
                                   "--append-samples"], conf, root=self.args.repo)
            self.state["runs"].append({"commit": sha, "seconds": round(time.monotonic() - t0, 1), "rc": rc})
            self._loaded.pop((self.results, sha), None)
            mine = self._load(self.results, sha)
            ran = [m.value for (name, _), m in (mine[2].items() if mine else []) if self.pattern.search(name)]
            if rc != 0 or not ran or None in ran:  # a build, an import or a benchmark failed
                self.state.setdefault("skipped", {})[sha] = f"asv run failed (exit {rc}): a benchmark did not run"
            self.save()
            self._rows.clear()

    def rows(self, base: str, head: str) -> dict:
        if (base, head) not in self._rows:
            sides = []
            for sha in (base, head):
                loaded = [x for x in (self._load(d, sha) for d in [self.results, *self.args.reuse]) if x]
                sides.append(pooled(loaded) if loaded else (sha, {}, {}, []))
            got = compare(sides[0][2], sides[1][2], {**sides[0][1], **sides[1][1]}, self.cfg)
            self._rows[(base, head)] = {(r["benchmark"], r["params"]): r for r in got
                                        if self.pattern.search(r["benchmark"])}
        return self._rows[(base, head)]


def markdown(report: dict) -> str:
    lines = [f"# First bad commits from {report['good'][:8]} to {report['bad'][:8]} on {report['machine']}", "",
             f"{len(report['commits'])} first-parent commits; benchmarks matching `{report['bench']}`; "
             f"{len(report['probes'])} probes; {report['runs']} asv runs, {report['seconds']:.0f} s of this host.", "",
             "| benchmark | params | finding | commit | parent | change | p / CI |", "|---|---|---|---|---|---|---|"]
    for f in report["findings"]:
        row = f.get("row") or {}
        change = "-" if row.get("change") is None else f"{row['change']:+.1%}"
        commit = f.get("commit", f.get("to", ""))[:8]
        parent = f.get("parent", f.get("from", ""))[:8]
        lines.append(f"| {method_of(f['benchmark'])} | {f['params']} | {f['kind']} | {commit} | {parent} | {change} | "
                     f"{row.get('test') or '-'} |")
    if not report["findings"]:
        lines.append("| - | - | no regression between the ends | - | - | - | - |")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]] if report["notes"] else []
    return "\n".join(lines) + "\n"


def search(args) -> dict:
    line = commits.first_parent(args.good, args.bad, args.repo)
    m = Measured(args)
    s = Search(line, m.rows, m.measure, m.rounds, m.skipped, args.min_rounds, args.max_rounds,
               decided=m.state.setdefault("decided", {}))
    try:
        ends = s.ends()
        findings, notes = [], []
        for end in (line[0], line[-1]):
            if m.skipped(end):
                raise DataError(f"{end[:8]} cannot be compared: {m.skipped(end)} (see {m.results})")
        for key, row in sorted(ends.items()):
            if row["verdict"] == "REGRESSION":
                findings += [{"benchmark": key[0], "params": key[1], **f} for f in s.find(key, row=row)]
            elif row["verdict"] == "not significant":
                notes.append(f"{method_of(key[0])}({key[1]}): {row['note']} between the ends after "
                             f"{args.max_rounds} rounds: inside the noise, not searched")
    finally:
        m.save()  # the decisions taken so far, for the same command given again
    notes += [f"skipped {sha[:8]}: {why}" for sha, why in m.state.get("skipped", {}).items()]
    return {"good": line[0], "bad": line[-1], "machine": args.machine, "bench": args.bench, "commits": line,
            "probes": list(dict.fromkeys(s.probes)), "findings": findings, "notes": notes,
            "runs": len(m.state["runs"]), "seconds": sum(r["seconds"] for r in m.state["runs"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("good")
    ap.add_argument("bad")
    ap.add_argument("--bench", required=True, help="regular expression of the benchmarks (asv run --bench)")
    ap.add_argument("--machine", required=True)
    ap.add_argument("--repo", type=Path, default=ROOT, help="the repository of the commits (default: this one)")
    ap.add_argument("--work", type=Path, help="this search's results and state (default .asv/find/GOOD-BAD)")
    ap.add_argument("--reuse", type=Path, nargs="*", help="results folders measured before (default: results/)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--machine-file", type=Path, default=Path.home() / ".asv-machine.json")
    ap.add_argument("--thresholds", default=str(ROOT / "benchmarks" / "thresholds.toml"))
    ap.add_argument("--min-rounds", type=int, default=2)
    ap.add_argument("--max-rounds", type=int, default=6)
    ap.add_argument("--max-seconds", type=float, help="stop measuring after this long (exit 3; run again to go on)")
    ap.add_argument("--no-run", action="store_true", help="decide from the results there only")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    if args.reuse is None:
        args.reuse = [ROOT / "results"] if (ROOT / "results").is_dir() and args.repo == ROOT else []
    if args.work is None:
        args.work = ROOT / ".asv" / "find" / f"{args.good}-{args.bad}".replace("/", "_")
    try:
        report = search(args)
    except OutOfTime:
        print(f"find_regression: --max-seconds spent; give the same command again to go on ({args.work})",
              file=sys.stderr)
        return 3
    except (DataError, ValueError) as exc:
        print(f"find_regression: {exc}", file=sys.stderr)
        return 2
    text = markdown(report)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, allow_nan=False, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
