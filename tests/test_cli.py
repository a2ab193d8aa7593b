"""`virnucpro predict` / `orfs` end to end on the CPU with the tiny preset."""
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_predict_compiles_in_one_thread_unless_told(tmp_path, monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    with inductor.patch(compile_threads=8):  # restores the setting afterwards, as monkeypatch cannot here
        assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", "-o", str(tmp_path / "a"), *TINY]) == 0
        assert inductor.compile_threads == 1
    # a user's own setting wins
    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "4")
    with inductor.patch(compile_threads=4):
        assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", "-o", str(tmp_path / "b"), *TINY]) == 0
        assert inductor.compile_threads == 4


def test_a_cpu_run_imports_no_compiler_and_leaves_inductor_one_thread(tmp_path):
    """Dynamo's import alone costs over a second, sympy's a quarter: a run that compiles nothing
    must not pay them, and Inductor, were it imported later, must still compile in one thread."""
    code = ("import os, sys; from virnucpro.cli import main; "
            f"rc = main(['predict', {str(DATA / 'KK037166.fna')!r}, '-l', '500', '-o', {str(tmp_path / 'o')!r}, "
            f"*{TINY!r}]); "
            "print(rc, 'torch._dynamo' in sys.modules, 'torch._inductor' in sys.modules, 'sympy' in sys.modules, "
            "os.environ.get('TORCHINDUCTOR_COMPILE_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_COMPILE_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert done.stdout.split() == ["0", "False", "False", "False", "1"], done.stderr


def test_a_bad_input_is_refused_before_torch_is_imported(tmp_path):
    code = ("import sys; from virnucpro.cli import main; "
            f"rc = main(['predict', {str(tmp_path / 'missing.fa')!r}, '-l', '500', '-o', {str(tmp_path / 'o')!r}]); "
            "print(rc, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "missing.fa: no such file" in done.stderr and not (tmp_path / "o").exists()


def test_the_installed_script_records_its_start_up(tmp_path):
    script = Path(sys.executable).with_name("virnucpro")
    if not script.exists():
        pytest.skip("virnucpro is not installed as a script beside this Python")
    done = subprocess.run([str(script), "predict", str(DATA / "edge_cases.fa"), "-l", "500", *TINY,
                           "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = [json.loads(p.read_text()) for p in (tmp_path / "o").glob("*/run.json")]
    # the interpreter's start and the imports are in it: more than nothing, less than the run
    assert 0 < run["startup_seconds"] < run["total_seconds"] + run["startup_seconds"] < 300


@pytest.fixture(scope="module")
def kk500(tmp_path_factory):
    out = tmp_path_factory.mktemp("kk500") / "out"
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", *TINY, "--keep-intermediate", "-o", str(out)]) == 0
    return out / "KK037166"


@pytest.mark.parametrize("how", ["stdin", "fifo", "process substitution", "gzip pipe"])
def test_predict_reads_a_pipe_once(tmp_path, kk500, how):
    kk, out = DATA / "KK037166.fna", tmp_path / "out"
    base = f"{sys.executable} -m virnucpro predict {{}} -l 500 {' '.join(TINY)} --keep-intermediate -o {out}"
    cmd = {"stdin": base.format("-") + f" < {kk}",
           "fifo": f"mkfifo {tmp_path}/f && (cat {kk} > {tmp_path}/f &) && " + base.format(f"{tmp_path}/f"),
           "process substitution": base.format(f"<(cat {kk})"),
           "gzip pipe": f"gzip -c {kk} | " + base.format("-")}[how]
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    (result,) = out.glob("*/prediction_results.txt")
    for name in ("chunks.fa", "orfs.fna", "orfs.faa"):  # every byte of the input read, once
        assert (result.parent / "intermediate" / name).read_bytes() == (kk500 / "intermediate" / name).read_bytes()
    # byte for byte: another process on a loaded host once gave last-bit different scores now and
    # then (docs/RELIABILITY.md, "Determinism on the CPU"), not seen since rows stopped depending
    # on their batch and thread count
    assert result.read_bytes() == (kk500 / "prediction_results.txt").read_bytes()


def test_rna_input_gives_the_dna_results(tmp_path, kk500):
    rna = tmp_path / "KK037166.fna"
    text = (DATA / "KK037166.fna").read_text()
    head, _, body = text.partition("\n")
    rna.write_text(head + "\n" + body.replace("T", "U").replace("t", "u"))
    assert main(["predict", str(rna), "-l", "500", *TINY, "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "KK037166" / "prediction_results.txt").read_text() == \
        (kk500 / "prediction_results.txt").read_text()
    run = json.loads((tmp_path / "out" / "KK037166" / "run.json").read_text())
    assert run["counts"]["rna_bases_read_as_t"] == body.count("T") + body.count("t") > 0



# --- output names and --force never touch what virnucpro did not make (docs/RELIABILITY.md) ---

SEQ = "ATGAAACGCATTAGCACCACCATTACCACCACCATCACCATTACCACAGGTAACGGTGCGGGCTGA" * 6
# input file name -> its result folder in OUT
ODD_NAMES = {"...fa": "fa", "..fa": "fa", ".fa": "fa", ".virnucpro.fa": "virnucpro", ".hidden.fna.gz": "hidden",
             "a\nb.fa": "a_b", "tab\there.fna": "tab_here", "\x1b[31mred.fa": "_[31mred",
             "bytes\udcff.fa": "bytes_", "sample.fna": "sample", "reads.fna.gz": "reads"}


def fasta(path, seq=SEQ):
    data = f">s1\n{seq}\n".encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def tree(root):
    """Every path under root (links not followed) with its content, for before/after comparisons."""
    found = {}
    for top, dirs, files in __import__("os").walk(root):
        for name in dirs + files:
            p = Path(top) / name
            found[str(p.relative_to(root))] = ("link", str(p.readlink())) if p.is_symlink() else \
                ("dir",) if p.is_dir() else ("file", p.read_bytes())
    return found


@pytest.mark.parametrize("force", [False, True], ids=["new", "force"])
@pytest.mark.parametrize("name", list(ODD_NAMES), ids=ascii)
def test_odd_input_names_stay_inside_out(tmp_path, name, force):
    src = tmp_path / "in"
    src.mkdir()
    path = fasta(src / name)
    base = tmp_path / "base"
    base.mkdir()
    (base / "canary.txt").write_text("beside OUT")
    out = base / "out"
    if force:
        out.mkdir()
        (out / "mine.txt").write_text("a user's file in OUT")
    assert main(["predict", str(path), "-l", "300", "-o", str(out), *TINY, *(["--force"] * force)]) == 0
    assert (base / "canary.txt").read_text() == "beside OUT"
    assert sorted(p.name for p in base.iterdir()) == ["canary.txt", "out"]
    stem = ODD_NAMES[name]
    assert {p.name for p in out.iterdir()} == {stem, ".virnucpro", *(["mine.txt"] * force)}
    assert (out / stem / "prediction_results.txt").is_file()
    own = out / ".virnucpro"
    assert (own / "lock").is_file() and not list(own.rglob("prediction_results*"))
    assert path.is_file()


def test_a_name_that_leaves_no_output_name_is_refused(tmp_path, capsys):
    path = fasta(tmp_path / "...")
    out = tmp_path / "out"
    assert main(["predict", str(path), "-l", "300", "-o", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rename" in err
    assert not out.exists()


@pytest.mark.parametrize("names", [(".fa", "..fa"), ("Sample.fa", "sample.fna"), ("a\tb.fa", "a\nb.fa")], ids=ascii)
def test_inputs_whose_output_names_clash_are_refused(tmp_path, capsys, names):
    paths = [str(fasta(tmp_path / n)) for n in names]
    out = tmp_path / "out"
    assert main(["predict", *paths, "-l", "300", "-o", str(out), *TINY]) == 2
    assert "clashes with input" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["folder", "file", "link"])
def test_force_refuses_what_it_did_not_make_in_the_way(tmp_path, capsys, kind):
    """`predict work/x.fa -o work --force` must not replace the user's work/x."""
    work = tmp_path / "work"
    work.mkdir()
    x = fasta(work / "x.fa")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.txt").write_text("linked")
    if kind == "folder":
        (work / "x").mkdir()
        (work / "x" / "thesis.txt").write_text("four years")
    elif kind == "file":
        (work / "x").write_text("a file")
    else:
        (work / "x").symlink_to(elsewhere)
    before, linked = tree(work), tree(elsewhere)
    assert main(["predict", str(x), "-l", "300", "-o", str(work), *TINY, "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{work / 'x'}:" in err
    assert tree(work) == before and tree(elsewhere) == linked


def test_force_removes_the_earlier_runs_result_folders_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    a, b, c = (fasta(tmp_path / f"{s}.fa") for s in "abc")
    assert main(["predict", str(a), str(b), "-l", "300", "-o", str(out), *TINY]) == 0
    (out / "mine").mkdir()
    (out / "mine" / "notes.txt").write_text("mine")
    (out / "notes.txt").write_text("mine too")
    assert main(["predict", str(b), str(c), "-l", "300", "-o", str(out), *TINY, "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".virnucpro", "b", "c", "mine", "notes.txt"]
    run = json.loads((out / ".virnucpro" / "manifest.json").read_text())["run"]
    for stem in "bc":
        assert json.loads((out / stem / ".virnucpro-result").read_text())["run"] == run
    assert (out / "mine" / "notes.txt").read_text() == "mine"


def test_force_refuses_to_remove_a_result_folder_holding_a_users_file(tmp_path, capsys):
    out = tmp_path / "out"
    a, b = fasta(tmp_path / "a.fa"), fasta(tmp_path / "b.fa")
    assert main(["predict", str(a), "-l", "300", "-o", str(out), *TINY]) == 0
    (out / "a" / "my_notes.txt").write_text("notes")
    before = tree(out)
    capsys.readouterr()
    for inputs in ([b], [a]):  # a folder --force would remove, then one it would replace
        assert main(["predict", *map(str, inputs), "-l", "300", "-o", str(out), *TINY, "--force"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(out / "a" / "my_notes.txt") in err
        assert tree(out) == before


def test_orfs_force_replaces_only_its_own_files(tmp_path, capsys):
    src = str(DATA / "SRR492066.fna")
    out = tmp_path / "o"
    out.mkdir()
    (out / "orfs.faa").write_text("a user's proteins")
    assert main(["orfs", src, "-l", "500", "-o", str(out), "--force"]) == 2
    assert str(out / "orfs.faa") in capsys.readouterr().err
    assert (out / "orfs.faa").read_text() == "a user's proteins"

    mine = tmp_path / "mine"
    assert main(["orfs", src, "-l", "500", "-o", str(mine)]) == 0
    assert main(["orfs", src, "-l", "500", "-o", str(mine), "--force"]) == 0  # its own files: replaced
    (mine / "chunks.fa").write_text(">edited by hand\nACGT\n")
    assert main(["orfs", src, "-l", "500", "-o", str(mine), "--force"]) == 2
    assert (mine / "chunks.fa").read_text() == ">edited by hand\nACGT\n"


def test_a_result_folder_is_replaced_only_when_this_run_made_it(tmp_path):
    from virnucpro import pipeline
    from virnucpro.errors import InputError
    from virnucpro.outputs import write_result_dir

    data = pipeline.prepare(pipeline.read_inputs([fasta(tmp_path / "s.fa")])[0], 300, pipeline.StageClock())
    n = len(data.orfs)
    pred = pipeline.Prediction(np.zeros((n, 2), np.float32), np.full((n, 2), 0.5, np.float32),
                               np.zeros((n, 4), np.float32))
    out = tmp_path / "out"
    write_result_dir(out, data, pred, {}, True)
    write_result_dir(out, data, pred, {}, True)  # its own folder: replaced
    (out / "s" / "extra.txt").write_text("a user's file")
    with pytest.raises(InputError, match="extra.txt"):
        write_result_dir(out, data, pred, {}, True)
    assert (out / "s" / "extra.txt").read_text() == "a user's file"
    assert (out / "s" / "prediction_results.txt").is_file()


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
    monkeypatch.setattr(cli, "_spawned_workers", False)
    assert main(["predict", str(DATA / "SRR492066.fna"), "-o", str(tmp_path / "o"), "--random-weights", "--preset", "tiny",
                 "--no-progress", "-l", "500", "--gpus", spec]) == 0
    assert calls == [started]
    assert chosen == device
