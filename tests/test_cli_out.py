"""What `predict` and `orfs` do in OUT: odd input names stay inside it, clashes are refused, --force removes only what the program made."""
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA
from test_cli import TINY
from virnucpro.cli import main



SEQ = "ATGAAACGCATTAGCACCACCATTACCACCACCATCACCATTACCACAGGTAACGGTGCGGGCTGA" * 6


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
