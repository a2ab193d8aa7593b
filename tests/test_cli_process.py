"""`predict` as a process: compile threads, what it imports, its start-up record, a pipe read once, RNA input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, ROOT
from test_cli import TINY
from virnucpro.cli import main



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
