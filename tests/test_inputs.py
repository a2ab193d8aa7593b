"""Inputs as a user hands them over: RNA, pipes, stdin, devices, endless or huge streams,
and `virnucpro orfs` writing atomically with bounded memory; numeric options range-checked."""
import gzip
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, ROOT
from virnucpro.chunking import chunk_records
from virnucpro.cli import build_parser, main
from virnucpro.errors import InputError
from virnucpro.fasta import FastaReader, read_fasta
from virnucpro.translate import identify_orfs

KK = DATA / "KK037166.fna"
OUTPUTS = ("chunks.fa", "orfs.fna", "orfs.faa")


def sequence_lines(text: str, change) -> str:
    return "\n".join(line if line.startswith(">") else change(line) for line in text.split("\n"))


def as_rna(text: str) -> str:
    return sequence_lines(text, lambda line: line.replace("T", "U").replace("t", "u"))


def cli(*args, stdin=None, timeout=120, shell=False):
    """`python -m virnucpro ...` (or a bash command line) in a child; returns (rc, stderr)."""
    cmd = ["bash", "-c", args[0]] if shell else [sys.executable, "-m", "virnucpro", *args]
    done = subprocess.run(cmd, stdin=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return done.returncode, done.stderr


# A child of its own measures the peak RSS of one command: RUSAGE_CHILDREN is the largest of all so far.
PEAK = ("import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stderr=subprocess.PIPE, text=True)\n"
        "sys.stderr.write(done.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
        "sys.exit(done.returncode)\n")


def cli_peak_mb(*args, timeout=600):
    done = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "virnucpro", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return done.returncode, done.stderr, float(done.stdout)


def one_error_line(err: str, *parts: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for part in parts:
        assert part in lines[0], err


def same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def kk_orfs(tmp_path_factory):
    out = tmp_path_factory.mktemp("kk") / "orfs"
    assert main(["orfs", str(KK), "-l", "300", "-o", str(out)]) == 0
    return out


# RNA

@pytest.mark.parametrize("chunk_len", [300, 500])
def test_rna_gives_the_orfs_of_dna(tmp_path, chunk_len):
    text = KK.read_text()
    rna = tmp_path / "KK037166_rna.fna"
    rna.write_text(as_rna(text))
    dna_records, _ = read_fasta(KK)
    reader = FastaReader(rna)
    rna_records = list(reader)
    assert rna_records == dna_records
    assert reader.rna_bases == sum(r.seq.upper().count("T") for r in dna_records) > 1000
    want = identify_orfs(chunk_records(dna_records, chunk_len))
    got = identify_orfs(chunk_records(rna_records, chunk_len))
    assert [(o.id, o.nucleotide, o.protein) for o in got] == [(o.id, o.nucleotide, o.protein) for o in want]
    assert len(want) > 20


def test_rna_orfs_command_writes_the_dna_files(tmp_path, kk_orfs, capsys):
    rna = tmp_path / "KK037166.fna"
    rna.write_text(as_rna(sequence_lines(KK.read_text(), str.lower)))  # lower case u too
    assert main(["orfs", str(rna), "-l", "300", "-o", str(tmp_path / "o")]) == 0
    assert "U read as T" in capsys.readouterr().err
    # chunks keep the input's case, ORFs are upper case
    assert (tmp_path / "o" / "chunks.fa").read_text() == sequence_lines((kk_orfs / "chunks.fa").read_text(), str.lower)
    for name in ("orfs.fna", "orfs.faa"):
        assert (tmp_path / "o" / name).read_bytes() == (kk_orfs / name).read_bytes()


# one pass: digest, pipes, stdin

def test_sha256_of_the_raw_bytes_set_at_the_end(tmp_path):
    packed = tmp_path / "kk.fa.gz"
    packed.write_bytes(gzip.compress(KK.read_bytes()))
    for path in (KK, packed):
        reader = FastaReader(path)
        assert reader.sha256 is None
        records = list(reader)
        assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert records == read_fasta(KK)[0] and reader.name == str(path)
        with pytest.raises(RuntimeError):
            list(reader)


def test_multi_member_gzip_and_zero_padding(tmp_path):
    path = tmp_path / "two.fa.gz"
    path.write_bytes(gzip.compress(b">a\nACGT\n") + gzip.compress(b">b\nGGCC\n") + b"\0" * 100)
    assert [(r.id, r.seq) for r in read_fasta(path)[0]] == [("a", "ACGT"), ("b", "GGCC")]


def test_fifo_is_read_once(tmp_path, kk_orfs):
    fifo = tmp_path / "in.fna"
    os.mkfifo(fifo)
    rc, err = cli(f"cat {KK} > {fifo} & exec {sys.executable} -m virnucpro orfs {fifo} -l 300 "
                     f"-o {tmp_path / 'o'}", shell=True, timeout=60)
    assert rc == 0, err
    same_outputs(tmp_path / "o", kk_orfs)


@pytest.mark.parametrize("producer", ["cat", "gzip -c"])
def test_process_substitution(tmp_path, kk_orfs, producer):
    rc, err = cli(f"exec {sys.executable} -m virnucpro orfs <({producer} {KK}) -l 300 -o {tmp_path / 'o'}",
                     shell=True, timeout=60)
    assert rc == 0, err
    same_outputs(tmp_path / "o", kk_orfs)


def test_dash_reads_stdin(tmp_path, kk_orfs):
    with open(KK, "rb") as f:
        rc, err = cli("orfs", "-", "-l", "300", "-o", str(tmp_path / "o"), stdin=f, timeout=60)
    assert rc == 0, err
    same_outputs(tmp_path / "o", kk_orfs)
    rc, err = cli(f"gzip -c {KK} | exec {sys.executable} -m virnucpro orfs - -l 300 -o {tmp_path / 'z'}",
                     shell=True, timeout=60)
    assert rc == 0, err
    same_outputs(tmp_path / "z", kk_orfs)


# refused at once

@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_character_device_is_refused(tmp_path, device):
    rc, err = cli("orfs", device, "-l", "300", "-o", str(tmp_path / "o"), timeout=30)
    assert rc == 2
    one_error_line(err, device, "device")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("producer, problem", [
    ("cat /dev/zero", "binary data"),
    ("cat /dev/urandom", "binary data"),
    ("yes ' '", "no FASTA header"),             # white space for ever
    ("{ printf '>'; yes A | tr -d '\\n'; }", "no FASTA header line ends"),  # a header line without end
    ("yes ACGT", "text before the first '>'"),
])
def test_endless_stream_without_fasta_structure_is_refused(tmp_path, producer, problem):
    rc, err = cli(f"{producer} | exec {sys.executable} -m virnucpro orfs - -l 300 -o {tmp_path / 'o'}",
                     shell=True, timeout=60)
    assert rc == 2
    one_error_line(err, "<stdin>", problem)
    assert not (tmp_path / "o").exists()


def test_sparse_file_is_refused_at_its_first_block(tmp_path):
    path = tmp_path / "sparse.fa"
    with open(path, "wb") as f:
        f.truncate(8 << 30)  # 8 GiB of zeros that take no disk
    with pytest.raises(InputError, match="binary data"):
        read_fasta(path)


def test_stdin_that_is_a_device_or_no_file(tmp_path, monkeypatch):
    rc, err = cli("orfs", "-", "-l", "300", "-o", str(tmp_path / "o"), stdin=subprocess.DEVNULL, timeout=30)
    assert rc == 2
    one_error_line(err, "<stdin>", "device")
    monkeypatch.setattr(sys, "stdin", io.StringIO(">a\nACGT\n"))  # no file behind it
    with pytest.raises(InputError, match="<stdin>: standard input cannot be read"):
        read_fasta("-")


def test_no_header_in_the_first_64_kib(tmp_path):
    path = tmp_path / "blank.fa"
    path.write_bytes(b"\n" * 70_000 + b">a\nACGT\n")
    with pytest.raises(InputError, match="no FASTA header"):
        read_fasta(path)
    path.write_bytes(b"\n" * 60_000 + b">a\nACGT\n")  # blank lines before a header within the first 64 KiB are fine
    assert read_fasta(path)[0][0].seq == "ACGT"


# memory follows the largest record, not the input

def test_predict_reads_the_input_once_and_removes_its_copies(tmp_path, monkeypatch):
    import tempfile

    from virnucpro.inputs import StageClock, prepare, read_inputs

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    f = tmp_path / "kk.fa"
    f.write_text(KK.read_text())
    data = read_inputs([f])[0]
    f.write_text(">other\nATGAAACCCGGGTTTTAA\n")  # the user's file changes after it was read: the copy counts
    prepare(data, 300, StageClock(), tmp_path / "spool")
    assert [o.id for o in data.orfs] == [o.id for o in identify_orfs(chunk_records(read_fasta(KK)[0], 300))]
    data.release()
    assert list(temp.iterdir()) == []
    assert main(["predict", str(KK), "-l", "300", "--random-weights", "--preset", "tiny", "--device", "cpu",
                 "--no-progress", "-o", str(tmp_path / "out")]) == 0
    assert list(temp.glob("virnucpro-*")) == []  # (torch keeps its compile cache there too)
    spools = tmp_path / "out" / ".virnucpro" / "spool"
    assert not spools.exists() or list(spools.iterdir()) == []


def test_stage_clock_counts_nested_time_for_the_inner_stage_alone(monkeypatch):
    from virnucpro import inputs

    ticks = iter([0.0, 1.0, 3.0, 6.0])  # enter outer, enter inner, leave inner, leave outer
    monkeypatch.setattr(inputs.time, "perf_counter", lambda: next(ticks))
    clock = inputs.StageClock()
    with clock("translate"):
        with clock("chunk"):
            pass
    assert clock.seconds == {"translate": 4.0, "chunk": 2.0}


# orfs: all or nothing

# numeric options

PREDICT = ["predict", "x.fa", "-l", "300", "-o", "out"]


@pytest.mark.parametrize("option, value", [
    ("--seed", "18446744073709551616"), ("--seed", "-1"), ("--seed", "1.5"),
    ("--batch-tokens", "0"), ("--batch-tokens", "-3"), ("--batch-tokens", "2147483648"), ("--batch-tokens", "many"),
    ("--checkpoint-every", "0"), ("--checkpoint-every", "99999999999999999999"),
    ("--cpu-workers", "0"), ("--cpu-workers", "100000"),
])
def test_numeric_option_out_of_range_is_one_line_rc_2(option, value, capsys):
    with pytest.raises(SystemExit) as info:
        main([*PREDICT, option, value])
    assert info.value.code == 2
    one_error_line(capsys.readouterr().err, option, value)


def test_numeric_option_limits_are_accepted():
    args = build_parser().parse_args([*PREDICT, "--seed", str(2**64 - 1), "--batch-tokens", "1",
                                      "--checkpoint-every", "1", "--cpu-workers", "256"])
    assert (args.seed, args.batch_tokens, args.checkpoint_every, args.cpu_workers) == (2**64 - 1, 1, 1, 256)
    import torch

    torch.Generator().manual_seed(args.seed)  # the largest seed is one torch takes
