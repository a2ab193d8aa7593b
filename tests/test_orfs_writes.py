"""`virnucpro orfs` writing: all or nothing, earlier files kept until the end, one line for each failure."""
import os

import pytest

from test_inputs import KK, kk_orfs, one_error_line, same_outputs  # noqa: F401 (kk_orfs: a fixture)
from virnucpro import faults
from virnucpro.cli import main


def test_orfs_bad_record_at_the_end_leaves_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.fa"
    bad.write_text(KK.read_text() + ">late\nACGTEACGT\n")
    out = tmp_path / "new" / "deeper"
    assert main(["orfs", str(bad), "-l", "300", "-o", str(out)]) == 2
    one_error_line(capsys.readouterr().err, str(bad), "'late'")
    assert not (tmp_path / "new").exists()


def test_orfs_force_keeps_earlier_files_until_the_end(tmp_path, kk_orfs, capsys):
    bad = tmp_path / "bad.fa"
    bad.write_text(KK.read_text() + ">KK037166.1\nACGT\n")
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    assert main(["orfs", str(KK), "-l", "300", "-o", str(out), "--force"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["orfs", str(bad), "-l", "300", "-o", str(out), "--force"]) == 2
    assert "duplicate" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    same_outputs(out, kk_orfs)


@pytest.mark.parametrize("fresh", [True, False])
def test_orfs_disk_full_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, fresh):
    out = tmp_path / "o"
    if not fresh:
        out.mkdir()
    monkeypatch.setenv(faults.ENV, "write:1:enospc")
    monkeypatch.setattr(faults, "_hits", faults.Counter())
    assert main(["orfs", str(KK), "-l", "300", "-o", str(out), "--force"]) == 1
    one_error_line(capsys.readouterr().err, "No space left on device", str(out))
    assert not out.exists() if fresh else list(out.iterdir()) == []


def test_orfs_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["orfs", str(KK), "-l", "300", "-o", str(blocker / "o")]) == 1
    one_error_line(capsys.readouterr().err, "cannot write", str(blocker))
    assert blocker.read_text() == "not a folder"


def test_orfs_read_only_output_is_one_line(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes")
        assert main(["orfs", str(KK), "-l", "300", "-o", str(ro / "o")]) == 1
        one_error_line(capsys.readouterr().err, "cannot write", "Permission denied")
    finally:
        ro.chmod(0o755)
    assert list(ro.iterdir()) == []
