"""`virnucpro predict` / `orfs` end to end on the CPU with the tiny preset."""
import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from Bio import SeqIO

from conftest import DATA, ROOT
from virnucpro.cli import main
from virnucpro.models.classifier_load import random_classifier, save_classifier

TINY = ["--random-weights", "--preset", "tiny", "--device", "cpu", "--no-progress"]


def read_table(path):
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    return [ln.split("\t") for ln in lines]


@pytest.fixture(scope="module")
def kk_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["predict", str(DATA / "KK037166.fna"), str(DATA / "edge_cases.fa"), "-l", "300",
                 "-o", str(out), *TINY, "--keep-intermediate"]) == 0
    return out


def test_predict_writes_every_file_with_the_original_formats(kk_run):
    res = kk_run / "KK037166"
    rows = read_table(res / "prediction_results.txt")
    assert rows[0] == ["Sequence_ID", "Prediction", "score1", "score2"]
    golden = [r.id for r in SeqIO.parse(DATA / "KK037166_chunked300_identified_protein.faa", "fasta")]
    assert [r[0] for r in rows[1:]] == golden
    for _, verdict, s1, s2 in rows[1:]:
        s1, s2 = float(s1), float(s2)
        assert abs(s1 + s2 - 1) < 1e-5
        assert verdict == ("virus" if s2 > s1 else "others")

    chunks = read_table(res / "prediction_results_highestscore.csv")
    assert chunks[0] == ["Modified_ID", "Is_Virus"]
    best = {}
    for orf_id, _, s1, s2 in rows[1:]:
        m1, m2 = best.get(orf_id[:-2], (-1, -1))
        best[orf_id[:-2]] = (max(m1, float(s1)), max(m2, float(s2)))
    assert {c: v for c, v in chunks[1:]} == {c: str(m2 >= m1) for c, (m1, m2) in best.items()}


def test_every_chunk_is_classified_or_skipped(kk_run):
    res = kk_run / "edge_cases"
    all_chunks = [r.id for r in SeqIO.parse(DATA / "edge_cases_chunked300.fa", "fasta")]
    classified = [r[0] for r in read_table(res / "prediction_results_highestscore.csv")[1:]]
    skipped = read_table(res / "skipped.tsv")[1:]
    assert sorted(classified + [s[0] for s in skipped]) == sorted(all_chunks)
    assert all(reason == "no_stop_free_frame" for _, reason in skipped)
    run = json.loads((res / "run.json").read_text())
    assert run["counts"]["chunks"] == len(all_chunks)
    assert run["counts"]["skipped"].get("no_stop_free_frame", 0) == len(skipped)
    assert run["random_weights"] is True and "RANDOM" in run["warning"]
    assert run["weights"]["esm2"]["kind"] == "random"
    assert {"dnabert", "esm2", "translate", "predict"} <= set(run["seconds"])


def test_contig_summary_matches_chunk_verdicts(kk_run):
    res = kk_run / "edge_cases"
    lines = (res / "contig_summary.tsv").read_text().splitlines()
    assert lines[0].startswith("# WARNING") and "RANDOM" in lines[0]
    rows = {r[0]: r for r in read_table(res / "contig_summary.tsv")[1:]}
    verdicts = dict(read_table(res / "prediction_results_highestscore.csv")[1:])
    long = rows["long_5000"]
    mine = {c: v for c, v in verdicts.items() if c.startswith("long_5000_chunk_")}
    assert int(long[2]) == 17 and int(long[3]) == len(mine)
    assert int(long[4]) == sum(v == "True" for v in mine.values())
    for rid, row in rows.items():
        n = sum(c.rsplit("_chunk_", 1)[0] == rid for c in verdicts)
        assert int(row[3]) == n and (row[5] == "NA") == (n == 0)


def test_keep_intermediate_features_match_dimensions(kk_run):
    inter = kk_run / "KK037166" / "intermediate"
    feats = np.load(inter / "features.npy")
    n = len(list(SeqIO.parse(inter / "orfs.faa", "fasta")))
    assert feats.shape == (n, 96 + 64) and np.isfinite(feats).all()


def test_same_seed_same_scores_and_gzip_input_equal(tmp_path):
    gz = tmp_path / "KK037166.fna.gz"
    gz.write_bytes(gzip.compress((DATA / "KK037166.fna").read_bytes()))
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", "-o", str(a), *TINY]) == 0
    assert main(["predict", str(gz), "-l", "500", "-o", str(b), *TINY]) == 0
    assert (a / "KK037166" / "prediction_results.txt").read_text() == \
        (b / "KK037166" / "prediction_results.txt").read_text()


def test_classifier_file_is_used_and_mismatch_refused(tmp_path, capsys):
    good = tmp_path / "clf.safetensors"
    save_classifier(random_classifier(160, 8, seed=5), good)
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", "-o", str(tmp_path / "o1"), *TINY,
                 "--classifier", str(good)]) == 0
    run = json.loads((tmp_path / "o1" / "KK037166" / "run.json").read_text())
    assert run["weights"]["classifier"]["path"] == str(good.resolve())
    bad = tmp_path / "bad.safetensors"
    save_classifier(random_classifier(3328, 8), bad)
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", "-o", str(tmp_path / "o2"), *TINY,
                 "--classifier", str(bad)]) == 3
    assert "3328" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize("content,problem", [
    (None, "not found|no such|does not exist"),
    (b"", "empty"),
    (b"@r1\nACGT\n+\nIIII\n", "FASTQ"),
    (b"\x00\x01\x02binary\xff\xfe", "binary"),
    (b"\x1f\x8b\x08\x00garbage", "gzip"),
    (b">p1\nMKVLAAGIVGLLLAQPEWFSTRHQ\n", "protein"),
    (b">r1\nACGT!!ACGT\n", "r1"),
    (b">r1\nACGT\n>r1\nGGCC\n", "duplicate"),
])
def test_bad_input_one_line_error_nothing_written(tmp_path, capsys, content, problem):
    path = tmp_path / "in.fa"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    assert main(["predict", str(path), "-l", "300", "-o", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert __import__("re").search(problem, err, __import__("re").I)
    assert not out.exists()


def test_directory_input_and_nonempty_out(tmp_path, capsys):
    assert main(["predict", str(tmp_path), "-l", "300", "-o", str(tmp_path / "o"), *TINY]) == 2
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "300", "-o", str(out), *TINY]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_empty_record_is_skipped_and_counted(tmp_path):
    path = tmp_path / "e.fa"
    path.write_text(">empty\n>ok\n" + "ATGAAACGCATTAGCACCACCATTACCACCACCATCACCATTACCACAGGTAACGGTGCGGGCTGA" * 6 + "\n")
    assert main(["predict", str(path), "-l", "300", "-o", str(tmp_path / "o"), *TINY]) == 0
    res = tmp_path / "o" / "e"
    assert ["empty", "empty_sequence"] in read_table(res / "skipped.tsv")
    assert json.loads((res / "run.json").read_text())["counts"]["skipped"]["empty_sequence"] == 1


def test_orfs_command_equals_golden(tmp_path):
    out = tmp_path / "orfs"
    assert main(["orfs", str(DATA / "SRR492066.fna"), "-l", "500", "-o", str(out)]) == 0
    for mine, golden in (("chunks.fa", "SRR492066_chunked500.fa"),
                         ("orfs.fna", "SRR492066_chunked500_identified_nucleotide.fa"),
                         ("orfs.faa", "SRR492066_chunked500_identified_protein.faa")):
        a = [(r.id, str(r.seq)) for r in SeqIO.parse(out / mine, "fasta")]
        b = [(r.id, str(r.seq)) for r in SeqIO.parse(DATA / golden, "fasta")]
        assert a == b


def test_help_is_complete():
    for args in (["--help"], ["predict", "--help"], ["orfs", "--help"]):
        done = subprocess.run([sys.executable, "-m", "virnucpro", *args], capture_output=True, text=True)
        assert done.returncode == 0
    text = subprocess.run([sys.executable, "-m", "virnucpro", "predict", "--help"], capture_output=True,
                          text=True).stdout
    for flag in ("--classifier", "--dnabert", "--esm", "--random-weights", "--preset", "--device", "--batch-tokens",
                 "--keep-intermediate", "--force", "--no-progress", "--seed", "--gpus", "--engine"):
        assert flag in text


def test_cpu_workers_equal_single_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = [str(DATA / "SRR492066.fna"), "-l", "500", *TINY]
    assert main(["predict", *args, "-o", str(one)]) == 0
    assert main(["predict", *args, "-o", str(two), "--cpu-workers", "2"]) == 0
    for f in ("prediction_results.txt", "prediction_results_highestscore.csv", "contig_summary.tsv"):
        assert (one / "SRR492066" / f).read_text() == (two / "SRR492066" / f).read_text()


def test_torchrun_gloo_equals_single_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = [str(DATA / "KK037166.fna"), "-l", "300", *TINY]
    assert main(["predict", *args, "-o", str(one)]) == 0
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--standalone", "-m", "virnucpro", "predict", *args, "-o", str(two)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((two / "KK037166" / "run.json").read_text())
    assert run["world_size"] == 2
    # measured from the start of rank 0's own process (`python -m virnucpro`)
    assert 0 < run["startup_seconds"] < 300
    assert 0 < json.loads((one / "KK037166" / "run.json").read_text())["startup_seconds"] < 300  # from main()
    for f in ("prediction_results.txt", "prediction_results_highestscore.csv", "contig_summary.tsv"):
        assert (one / "KK037166" / f).read_text() == (two / "KK037166" / f).read_text()


def test_engine_reference_agrees_with_fast(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    args = [str(DATA / "KK037166.fna"), "-l", "500", *TINY]
    assert main(["predict", *args, "-o", str(a)]) == 0
    assert main(["predict", *args, "-o", str(b), "--engine", "reference"]) == 0
    fa = np.array([r[2:] for r in read_table(a / "KK037166" / "prediction_results.txt")[1:]], dtype=float)
    fb = np.array([r[2:] for r in read_table(b / "KK037166" / "prediction_results.txt")[1:]], dtype=float)
    assert fa.shape == fb.shape and np.abs(fa - fb).max() < 1e-4


def test_persistent_and_reloaded_models_agree(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    args = [str(DATA / "KK037166.fna"), str(DATA / "SRR492066.fna"), "-l", "500", *TINY]
    assert main(["predict", *args, "-o", str(a)]) == 0
    assert main(["predict", *args, "-o", str(b), "--no-persistent-models"]) == 0
    for stem in ("KK037166", "SRR492066"):
        assert (a / stem / "prediction_results.txt").read_text() == (b / stem / "prediction_results.txt").read_text()
        assert json.loads((b / stem / "run.json").read_text())["persistent_models"] is False


def test_cuda_without_gpu_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", "-o", str(tmp_path / "o"),
                 "--random-weights", "--preset", "tiny", "--device", "cuda"]) == 2
    assert "cuda" in capsys.readouterr().err.lower()
    assert not (tmp_path / "o").exists()


def test_package_commit_names_head_and_marks_a_changed_tree():
    import subprocess
    from pathlib import Path

    import virnucpro
    from virnucpro.outputs import package_commit

    here = Path(virnucpro.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    dirty = subprocess.run(["git", "-C", str(here), "diff", "--quiet", "HEAD", "--", "."]).returncode == 1
    assert package_commit() == head.stdout.strip() + ("+dirty" if dirty else "")


def test_next_input_is_prepared_while_this_one_is_classified(tmp_path, monkeypatch):
    import threading

    from virnucpro import serving

    second_ready = threading.Event()
    real_prepare, real_classify = serving.prepare, serving._classify
    waited = []

    def prepare(data, chunk_len, clock, *spool):
        out = real_prepare(data, chunk_len, clock, *spool)
        if data.path.name == "edge_cases.fa":
            second_ready.set()
        return out

    def classify(orfs, *args, **kw):
        if not waited:  # the first range of the first input: the second input's chunking runs meanwhile
            waited.append(second_ready.wait(timeout=60))
        return real_classify(orfs, *args, **kw)

    monkeypatch.setattr(serving, "prepare", prepare)
    monkeypatch.setattr(serving, "_classify", classify)
    inputs = [str(DATA / "KK037166.fna"), str(DATA / "edge_cases.fa")]
    assert main(["predict", *inputs, "-l", "300", *TINY, "-o", str(tmp_path / "out")]) == 0
    assert waited == [True]
    assert (tmp_path / "out" / "edge_cases" / "prediction_results.txt").is_file()


# --- output names and --force never touch what virnucpro did not make (docs/RELIABILITY.md) ---

# input file name -> its result folder in OUT
HERE = ("here", "cuda")


@pytest.mark.parametrize("spec,visible,started,device", [("1", 4, HERE, [0]), ("2", 4, ("spawned", 2, [0, 1]), []),
                                                         ("3,", 4, HERE, [3]), ("all", 1, HERE, [0])])
def test_one_gpu_runs_in_this_process_and_more_are_spawned(tmp_path, monkeypatch, spec, visible, started, device):
    # No CUDA here: torch's view of the GPUs is replaced, and so are the two ways a run is started,
    # so this checks which one --gpus takes (a spawned worker would import torch again).
    from virnucpro import cli, parallel
    calls, chosen = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(cli, "_predict_rank", lambda inputs, out, opts, *rest: calls.append(("here", opts.device)))
    monkeypatch.setattr(parallel, "spawn", lambda fn, job, world, gpus: calls.append(("spawned", world, gpus)))
    assert main(["predict", str(DATA / "SRR492066.fna"), "-o", str(tmp_path / "o"), "--random-weights", "--preset", "tiny",
                 "--no-progress", "-l", "500", "--gpus", spec]) == 0
    assert calls == [started]
    assert chosen == device
