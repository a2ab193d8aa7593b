import os
import time

from virnucpro.models.dnabert_load import find_snapshot
from virnucpro.models.hub import hf_cache_roots, hf_snapshots


def _snapshot(repo, name, files=("config.json", "model.safetensors")):
    snap = repo / "snapshots" / name
    snap.mkdir(parents=True)
    for f in files:
        (snap / f).write_text("{}")
    return snap


def test_refs_main_first_then_newest_and_only_usable(tmp_path):
    repo = tmp_path / "models--org--m"
    old = _snapshot(repo, "aaa")
    broken = _snapshot(repo, "bbb", files=("config.json",))
    new = _snapshot(repo, "ccc")
    os.utime(old, (time.time() - 100, time.time() - 100))
    usable = lambda s: (s / "model.safetensors").is_file()  # noqa: E731
    assert hf_snapshots(repo, usable) == [new, old]
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaa\n")
    assert hf_snapshots(repo, usable) == [old, new]
    assert broken not in hf_snapshots(repo, usable)
    assert hf_snapshots(tmp_path / "absent", usable) == []


def test_cache_roots_follow_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    roots = hf_cache_roots()
    assert roots[0] == tmp_path / "a" and tmp_path / "home" / "hub" in roots


def test_dnabert_name_is_found_in_the_hf_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    snap = _snapshot(tmp_path / "hub" / "models--zhihan1996--DNABERT-S", "abc", files=("config.json", "pytorch_model.bin"))
    assert find_snapshot("zhihan1996/DNABERT-S") == snap
