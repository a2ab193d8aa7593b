"""Faults of one `predict` (docs/RELIABILITY.md): out of memory, a full or read-only disk, damaged range files, non-finite embeddings, a resume that does not fit."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import DATA
from test_reliability import (INPUTS, STEMS, assert_same_results, baseline, fault, predict, reused,  # noqa: F401
                              saved)
from virnucpro import checkpoint, embed, faults



def test_out_of_memory_halves_the_token_budget(baseline, tmp_path, capsys, fault):
    fault("step:1:oom")
    out = tmp_path / "out"
    assert predict(out, "--batch-tokens", "1024") == 0
    assert "out of GPU memory at 1024 tokens per step, retrying with 512" in capsys.readouterr().err
    assert json.loads((out / "KK037166" / "run.json").read_text())["batch_tokens"] == {"dnabert": 512, "esm2": 1024}
    for stem in STEMS:  # other batches round differently: same ids, scores equal to float precision
        a, b = ([ln.split("\t") for ln in (d / stem / "prediction_results.txt").read_text().splitlines()[1:]]
                for d in (out, baseline))
        assert [r[0] for r in a] == [r[0] for r in b]
        assert np.allclose(np.array([r[2:] for r in a], float), np.array([r[2:] for r in b], float), atol=1e-5)


def test_out_of_memory_at_one_sequence_per_step_fails_with_advice(tmp_path, capsys, fault):
    fault("step:*:oom")
    out = tmp_path / "out"
    assert predict(out, "--batch-tokens", "1024") == 1
    err = capsys.readouterr().err
    assert "retrying with 512" in err and "even with one sequence" in err and "--precision bf16" in err
    assert not out.exists()  # nothing was saved, so the folder this run created is gone


def test_disk_full_keeps_earlier_checkpoints(baseline, tmp_path, capsys, fault, monkeypatch):
    out = tmp_path / "out"
    fault("checkpoint:3:enospc")
    assert predict(out) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and str(out / ".virnucpro") in err
    assert saved(out) == ["0-25.npz", "25-39.npz"]  # and no temp file
    monkeypatch.delenv(faults.ENV)
    damaged = out / checkpoint.DIR / "ranges" / "KK037166" / "25-39.npz"
    damaged.write_bytes(damaged.read_bytes()[:200])
    assert predict(out, "--resume") == 0
    assert_same_results(out, baseline)
    assert reused(out) == 1  # the damaged range was recomputed


def test_resume_keeps_the_first_runs_automatic_budget(tmp_path, fault, monkeypatch):
    # the automatic budget follows free GPU memory, so it may differ on resume; the CPU default stands in
    monkeypatch.setattr(embed, "DEFAULT_CPU_BUDGET", 64)
    assert predict(tmp_path / "small") == 0
    out = tmp_path / "out"
    fault("checkpoint:5:enospc")
    assert predict(out) == 1
    monkeypatch.delenv(faults.ENV)
    monkeypatch.setattr(embed, "DEFAULT_CPU_BUDGET", 16384)
    assert predict(out, "--resume") == 0
    assert_same_results(out, tmp_path / "small")


def test_disk_full_while_writing_results(baseline, tmp_path, capsys, fault, monkeypatch):
    out = tmp_path / "out"
    fault("write:2:enospc")
    assert predict(out) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out / ".virnucpro" / "partial" / "edge_cases.") in err
    assert sorted(p.name for p in out.iterdir()) == [".virnucpro", "KK037166"]
    monkeypatch.delenv(faults.ENV)
    assert predict(out, "--resume") == 0
    assert_same_results(out, baseline)
    assert reused(out, "edge_cases") == 6


def test_read_only_output_is_a_clear_error(tmp_path, capsys, fault, monkeypatch):
    out = tmp_path / "out"
    fault("checkpoint:3:enospc")
    assert predict(out) == 1
    monkeypatch.delenv(faults.ENV)
    dirs = [out, *(p for p in out.rglob("*") if p.is_dir())]
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for d in dirs:
        d.chmod(0o500)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes")
        capsys.readouterr()
        assert predict(out, "--resume") == 1
        err = capsys.readouterr().err
        assert "cannot write" in err and "Permission denied" in err and str(out) in err
    finally:
        for d in dirs:
            d.chmod(0o755)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_resume_refuses_other_inputs_or_options(baseline, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(baseline, out)
    changed = tmp_path / "KK037166.fna"
    changed.write_text((DATA / "KK037166.fna").read_text().replace("ACGT", "ACGA", 1))
    cases = [(["--resume", "-l", "500"], INPUTS, "chunk_length was 300, now 500"),
             (["--resume", "--seed", "1"], INPUTS, "seed was 0, now 1"),
             (["--resume"], INPUTS[:1], "inputs were ['KK037166', 'edge_cases'], now ['KK037166']"),
             (["--resume"], [str(changed), INPUTS[1]], "the content of KK037166 changed"),
             ([], INPUTS, "use --resume")]
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for extra, inputs, why in cases:
        assert predict(out, *extra, inputs=inputs) == 2
        assert why in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert predict(out, "--resume") == 0
    assert "finished by an earlier run" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resume_needs_a_run_to_continue(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    assert predict(busy, "--resume") == 2
    assert "holds no virnucpro run" in capsys.readouterr().err
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("n,every", [(1, 16), (114, 16), (60, 16), (60, 4096), (10_001, 4096), (3000, 4096)])
def test_ranges_cover_every_orf_once_and_balance_up_to_eight_ranks(n, every):
    spans = checkpoint.ranges(n, every)
    assert [i for a, b in spans for i in range(a, b)] == list(range(n))
    sizes = [b - a for a, b in spans]
    assert max(sizes) <= every and len(set(sizes[:-1])) <= 1
    if n >= checkpoint.BALANCE * checkpoint.MIN_RANGE or len(spans) >= checkpoint.BALANCE:
        for world in (1, 2, 4, 8):  # equal shares: whole ranges, as many for every rank
            assert len(spans) % world == 0


def test_the_number_of_processes_does_not_change_the_bytes(baseline, tmp_path):
    # 3 processes used to lay out 9 ranges of 13 instead of 8 of 15, and batches of another
    # composition give other last bits
    for n in (2, 3):
        out = tmp_path / f"w{n}"
        assert predict(out, "--cpu-workers", str(n)) == 0
        assert_same_results(out, baseline)


def test_every_damaged_byte_of_a_range_file_is_caught(tmp_path):
    from virnucpro.pipeline import Prediction, prepare, read_inputs, StageClock

    (data,) = read_inputs([DATA / "edge_cases.fa"])
    prepare(data, 300, StageClock())
    store = checkpoint.Store(tmp_path)
    store.manifest = {"fingerprint": "f" * 64}
    rng = np.random.default_rng(0)
    probs = rng.random((4, 2), dtype=np.float32)
    store.save(data, 0, 4, Prediction(rng.random((4, 2), dtype=np.float32), probs, np.empty((4, 0))), False)
    path = store._path(data.stem, 0, 4)
    good, raw = store._read(data, 0, 4), path.read_bytes()
    assert good is not None and (good["probs"] == probs).all()
    silent = 0
    for i in range(len(raw)):
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 0x10]) + raw[i + 1:])
        got = store._read(data, 0, 4)
        if got is None:
            assert not path.exists()  # removed, so the range is recomputed
        else:  # a byte outside the data (a zip timestamp, say): what is read is still the saved range
            silent += 1
            assert got.keys() == good.keys() and all((got[k] == good[k]).all() for k in good)
    assert silent < len(raw) // 4


def test_one_flipped_byte_in_a_range_is_recomputed_by_the_first_resume(baseline, tmp_path, fault, monkeypatch):
    import zipfile

    out = tmp_path / "out"
    fault("checkpoint:3:enospc")
    assert predict(out) == 1
    monkeypatch.delenv(faults.ENV)
    damaged = out / checkpoint.DIR / "ranges" / "KK037166" / "0-25.npz"
    raw = bytearray(damaged.read_bytes())
    with zipfile.ZipFile(damaged) as z:
        info = z.getinfo("probs.npy")
    raw[info.header_offset + 30 + len(info.filename) + info.file_size - 3] ^= 0x01  # inside probs' last row
    damaged.write_bytes(bytes(raw))
    assert predict(out, "--resume") == 0
    assert_same_results(out, baseline)
    assert reused(out) == 1


def test_non_finite_embeddings_stop_the_run_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    from virnucpro import pipeline

    load = pipeline.embed.load_protein_model

    def poisoned(*a, **k):
        e = load(*a, **k)
        with torch.no_grad():
            next(p for p in e.model.parameters() if p.dim() == 2)[0, 0] = float("nan")
        return e

    monkeypatch.setattr(pipeline.embed, "load_protein_model", poisoned)
    out = tmp_path / "out"
    assert predict(out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ESM-2 embeddings hold NaN or infinite values" in err[0], err
    assert not out.exists()  # nothing worth keeping was made, so the folder this run created is gone


def test_resume_refuses_a_user_folder_in_the_way(tmp_path, capsys, fault, monkeypatch):
    out = tmp_path / "out"
    fault("checkpoint:3:enospc")
    assert predict(out) == 1
    monkeypatch.delenv(faults.ENV)
    (out / "KK037166").mkdir()
    (out / "KK037166" / "thesis.txt").write_text("mine")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert predict(out, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out / 'KK037166'}:" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
