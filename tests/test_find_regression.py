"""scripts/find_regression.py on a throwaway history of 16 commits built in a temporary repository
from the project's package, measured by real asv runs on this host: one commit makes translation
three times as slow, an earlier one makes chunking twice as fast, one in between cannot run.

The searches time code, so they run on a host with nothing else to do: `.ci/run` runs this file
on its own after the suite (VIRNUCPRO_TIMED_ALONE=1).  Beside the other tests on two cores, the
load they put on the host moved whole asv runs by 80 %, and a search named a commit that was not
slower."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import DATA, ROOT
from suite import bisect

pytest.importorskip("asv")
import find_regression  # noqa: E402

alone = pytest.mark.skipif(os.environ.get("VIRNUCPRO_TIMED_ALONE") != "1",
                           reason="times code: runs alone in .ci/run (VIRNUCPRO_TIMED_ALONE=1)")

# Two stages of the package as asv times them; their input is part of the throwaway repository.
BENCH = '''
from pathlib import Path


class Stages:
    # each sample some tens of milliseconds: microseconds differ by 20-30 % between processes
    number = 3
    repeat = (6, 8, 4.0)
    warmup_time = 0.1

    def setup(self):
        from virnucpro.chunking import chunk_records
        from virnucpro.fasta import read_fasta

        self.records = read_fasta(Path(__file__).resolve().parents[1] / "input.fna")[0] * 12
        self.chunks = chunk_records(self.records, 300)

    def time_chunking(self):
        from virnucpro.chunking import chunk_records

        chunk_records(self.records, 300)

    def time_translate(self):
        from virnucpro.translate import identify_orfs

        identify_orfs(self.chunks)
'''
# Planted extra passes: the function runs `times` times, so the stage takes that many times as long.
TIMES = '''

_once_{name} = {name}


def {name}(*args, **kwargs):  # planted: extra passes
    for _ in range({times} - 1):
        _once_{name}(*args, **kwargs)
    return _once_{name}(*args, **kwargs)
'''
# Wide, as a change is small next to the planted factors: asv runs of the same code moved by up to
# 36 % between rounds on a 2-core host (a CI run, 2026-12-07).
THRESHOLDS = """
[regression]
max_fraction = 0.5
higher_is_better = []
lower_is_better = []
"""
SLOW, FAST, BROKEN = 11, 4, 7  # translate 3x as slow; chunking 2x as fast; a syntax error (fixed at 8)


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """(repository, its 16 first-parent commits, oldest first)."""
    repo = tmp_path_factory.mktemp("history") / "repo"
    shutil.copytree(ROOT / "virnucpro", repo / "virnucpro", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "asv.conf.json", repo / "asv.conf.json")
    shutil.copyfile(DATA / "SRR492066.fna", repo / "input.fna")
    (repo / "benchmarks").mkdir()
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "bench_planted.py").write_text(BENCH)
    chunking, translate = repo / "virnucpro" / "chunking.py", repo / "virnucpro" / "translate.py"
    original = {p: p.read_text() for p in (chunking, translate)}
    chunking.write_text(original[chunking] + TIMES.format(name="chunk_records", times=2))
    _git(repo.parent, "init", "-q", "-b", "main", str(repo))
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "config", "user.name", "t")
    shas = []
    for i in range(16):
        if i == FAST:
            chunking.write_text(original[chunking])
        if i == BROKEN:
            translate.write_text(original[translate] + "\ndef broken(:\n")
        if i == BROKEN + 1:
            translate.write_text(original[translate])
        if i == SLOW:
            translate.write_text(original[translate] + TIMES.format(name="identify_orfs", times=3))
        (repo / "notes.txt").write_text(f"commit {i}\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"commit {i}")
        shas.append(_git(repo, "rev-parse", "HEAD"))
    return repo, shas


def search(tmp_path, repo, good, bad, work):
    """find_regression's report; asv's machine file is the one in HOME, here tmp_path's."""
    (tmp_path / "thresholds.toml").write_text(THRESHOLDS)
    out = tmp_path / f"{work}.json"
    code = find_regression.main([good, bad, "--bench", "time_", "--machine", "cpu-find", "--repo", str(repo),
                                 "--work", str(tmp_path / work), "--reuse", "--thresholds",
                                 str(tmp_path / "thresholds.toml"), "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text())


@alone
def test_names_the_slow_commit_skips_the_broken_one_ignores_the_speed_up(history, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    repo, shas = history
    report = search(tmp_path, repo, shas[0], shas[-1], "full")
    found = [(f["benchmark"].rsplit(".", 1)[-1], f["kind"], f["commit"]) for f in report["findings"]]
    assert found == [("time_translate", "first bad commit", shas[SLOW])], report["findings"]
    translate = report["findings"][0]["row"]
    assert translate["verdict"] == "REGRESSION" and translate["change"] > 1.0 and translate["p_value"] < 0.002
    assert report["findings"][0]["parent"] == shas[SLOW - 1]
    assert any(n.startswith(f"skipped {shas[BROKEN][:8]}") for n in report["notes"])
    # log2(16) probes: 8 (the broken 7 skipped), 11, 9, 10
    assert report["probes"] == [shas[8], shas[SLOW], shas[9], shas[10]]
    again = search(tmp_path, repo, shas[0], shas[-1], "full")  # given again: decided from what is there
    assert again["runs"] == report["runs"] and again["findings"] == report["findings"]
    assert again["probes"] == report["probes"]


@alone
def test_a_range_without_a_slow_down_names_nothing(history, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    repo, shas = history
    report = search(tmp_path, repo, shas[BROKEN + 1], shas[SLOW - 1], "aa")
    # No commit is named.  The host itself may drift between rounds (a CI run at e3a61b0 saw the
    # same code +63-70 % apart, p ~ 1e-6, between two ends): such a step is reported as spread or
    # inside the noise, over the whole range, never as a first bad commit.
    assert [f for f in report["findings"] if f["kind"] != "spread or inside the noise"] == []
    assert all(f["from"] == shas[BROKEN + 1] and f["to"] == shas[SLOW - 1] for f in report["findings"])


def test_a_step_inside_the_noise_is_not_a_culprit():
    """Two halves each worse by less than the threshold: the range is reported, no commit named."""
    c = ["a", "b", "c"]
    row = lambda verdict: {"verdict": verdict, "change": 0.1}  # noqa: E731
    table = {("a", "c"): row("REGRESSION"), ("a", "b"): row("no change"), ("b", "c"): row("no change")}
    s = bisect.Search(c, lambda x, y: {"k": table[(x, y)]}, lambda shas: None, lambda sha: 9, lambda sha: None)
    [f] = s.find("k", row=table[("a", "c")])
    assert f["kind"] == "spread or inside the noise" and f["from"] == "a" and f["to"] == "c"


def test_a_resumed_search_takes_the_decisions_it_took_before():
    """Given again, the search goes the way it went: a neighbour measured again later (more rounds)
    must not turn a half that was decided into another verdict."""
    c = ["a", "b", "c", "d"]
    regression, flat = {"verdict": "REGRESSION", "change": 1.0}, {"verdict": "no change", "change": 0.0}
    table = {("a", "d"): regression, ("a", "b"): flat, ("b", "d"): regression, ("b", "c"): flat, ("c", "d"): regression}
    first = bisect.Search(c, lambda x, y: {"k": table[(x, y)]}, lambda shas: None, lambda sha: 9, lambda sha: None)
    assert [f["commit"] for f in first.find("k", row=regression)] == ["d"]
    table[("a", "b")] = regression  # what later rounds of b would say
    again = bisect.Search(c, lambda x, y: {"k": table[(x, y)]}, lambda shas: pytest.fail("measured again"),
                          lambda sha: 9, lambda sha: None, decided=dict(first.decided))
    assert [f["commit"] for f in again.find("k", row=regression)] == ["d"]
    assert again.probes == first.probes
