"""Streamed ranges (serving.py, stream.py): a range is scored as soon as its chunks are
translated, and the results are the bytes of a run that translates everything first.

The driver is what streaming changes, so the networks are replaced by a function of each ORF's
id: on the CPU the real ones share the cores with translation, where serving.streams keeps
them apart; on the GPU, gpu_report's resume check runs the real ones streamed."""
import hashlib
import json
import threading
from collections import Counter

import numpy as np
import pytest

from conftest import DATA
from virnucpro import checkpoint, faults, inputs, serving
from virnucpro.cli import main
from virnucpro.scoring import Prediction
from virnucpro.stream import Cancelled, RangeStream

INPUTS = [str(DATA / "KK037166.fna"), str(DATA / "edge_cases.fa")]
OPTS = ["-l", "300", "--random-weights", "--preset", "tiny", "--device", "cpu", "--no-progress",
        "--checkpoint-every", "9", "--keep-intermediate"]  # KK037166: 67 chunks in 8 ranges of 9
SKIP = {"run.json", ".virnucpro-result"}  # they name the run and its times


class Scored:
    """Stands in for the networks: features from each ORF's id; records what was translated
    (chunks handed over by the producer) each time a range is scored."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []  # (ORFs in the range, chunks translated by then)
        self.chunks = 0
        self.first = threading.Event()

    def __call__(self, orfs, models, clock, on_dna=None, on_protein=None, tokens=None):
        self.calls.append((len(orfs), self.chunks))
        self.first.set()
        dim = models.dna.dim + models.protein.dim
        feats = np.stack([np.random.default_rng(int(hashlib.sha256(o.id.encode()).hexdigest()[:12], 16))
                          .random(dim, dtype=np.float32) for o in orfs])
        logits = feats[:, :2] * 4 - 2
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return Prediction(logits, probs.astype(np.float32), feats)


@pytest.fixture
def scored(monkeypatch):
    s = Scored()
    monkeypatch.setattr(serving, "_classify", s)
    real = inputs.iter_chunk_orfs

    def counted(chunks):
        for item in real(chunks):
            s.chunks += 1
            yield item

    monkeypatch.setattr(inputs, "iter_chunk_orfs", counted)
    monkeypatch.setattr(faults, "_hits", Counter())
    return s


def files(out):
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and p.name not in SKIP and checkpoint.DIR not in p.parts}


def predict(out, stream: bool, *extra, monkeypatch):
    monkeypatch.setattr(serving, "streams", lambda opts, device: stream)
    return main(["predict", *INPUTS, *OPTS, "-o", str(out), *extra])


def test_ranges_are_scored_while_later_ones_are_translated(tmp_path, scored, monkeypatch):
    real = inputs.iter_chunk_orfs

    def gated(chunks):  # the 10th chunk of KK037166 waits until the first range is scored
        for n, item in enumerate(real(chunks)):
            if n == 9 and scored.chunks < 20:
                assert scored.first.wait(60), "the first range was not scored before the rest was translated"
            yield item

    assert predict(tmp_path / "whole", False, monkeypatch=monkeypatch) == 0
    whole = scored.calls[:]
    assert all(c >= 67 for _, c in whole[:8])  # not streamed: KK037166 translated before its first range
    scored.calls.clear()
    scored.chunks, scored.first = 0, threading.Event()
    monkeypatch.setattr(inputs, "iter_chunk_orfs", gated)
    assert predict(tmp_path / "streamed", True, monkeypatch=monkeypatch) == 0
    assert scored.calls[0][1] == 10  # the first range's nine chunks, and the tenth held back until it was scored
    assert [n for n, _ in scored.calls] == [n for n, _ in whole]  # the same ranges, in order
    assert files(tmp_path / "streamed") == files(tmp_path / "whole")
    run = json.loads((tmp_path / "streamed" / "KK037166" / "run.json").read_text())
    assert run["checkpoint"] == {"ranges": 8, "reused": 0} and run["counts"]["orfs"] == 114


def test_a_streamed_run_resumes_to_the_same_bytes(tmp_path, scored, monkeypatch):
    assert predict(tmp_path / "whole", True, monkeypatch=monkeypatch) == 0
    out = tmp_path / "out"
    monkeypatch.setenv(faults.ENV, "checkpoint:3:enospc")
    assert predict(out, True, monkeypatch=monkeypatch) == 1
    assert len(list((out / checkpoint.DIR / "ranges" / "KK037166").glob("*.npz"))) == 2
    monkeypatch.delenv(faults.ENV)
    assert predict(out, True, "--resume", monkeypatch=monkeypatch) == 0
    assert files(out) == files(tmp_path / "whole")
    assert json.loads((out / "KK037166" / "run.json").read_text())["checkpoint"]["reused"] == 2


def test_a_failed_translation_reaches_the_scorer_and_a_stopped_scorer_stops_translation():
    s = RangeStream([(0, 2), (2, 4)])
    s.publish(3, "orfs.tsv", 120)
    assert s.wait(0) == (0, 3, "orfs.tsv", (0, 120))
    s.fail(ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        s.wait(1)
    s.cancel()
    with pytest.raises(Cancelled):
        s.publish(5, "orfs.tsv", 200)


def test_the_chunk_count_is_known_before_translation(tmp_path):
    for path in INPUTS:
        (data,) = inputs.read_inputs([path])
        n = data.chunk_count(300)
        inputs.prepare(data, 300, inputs.StageClock(), tmp_path / data.stem)
        assert n == len(data.chunks) and n == sum(1 for _ in data.chunks)
        data.release()


def test_the_dnabert_warm_up_runs_in_its_own_thread_and_its_error_reaches_join():
    from virnucpro import embed
    from virnucpro.scoring import _Warm

    seen = []

    class Dna:
        def embed(self, seqs):
            seen.append((threading.current_thread().name, len(seqs)))
            if len(seen) > 1:
                raise RuntimeError("CUDA error: out of memory")

    _Warm(Dna()).join()
    assert seen == [("virnucpro-warm-dnabert", 2)]
    with pytest.raises(RuntimeError, match="out of memory"):
        _Warm(Dna()).join()
    tiny = embed.load_dna_model("random:tiny")
    _Warm(tiny).join()  # the real embedder, on the CPU here


def test_the_cpu_repeat_probe_compares_runs(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "probes" / "cpu_repeat_probe.py"), str(DATA / "edge_cases.fa"),
                        "--runs", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.stdout.strip().endswith("of 1 runs differ from the first"), p.stderr[-2000:]
    assert p.returncode == (0 if p.stdout.startswith("0 of") else 1)
