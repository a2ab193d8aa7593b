"""README's command blocks run as pasted: every fenced bash block of README.md and docs/ parses, the
worked example runs on the CPU, and the real-model example reaches virnucpro's own checks."""
import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


def block_with(text: str) -> str:
    found = [b for b in blocks(ROOT / "README.md") if text in b]
    assert len(found) == 1, f"one README block holding {text!r}, found {len(found)}"
    return found[0]


def shell_env(tmp_path) -> dict:
    """virnucpro and python on PATH as a user's activated environment has them."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_bash_block_parses(doc):
    for block in blocks(doc):
        p = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert p.returncode == 0, f"{doc.name}: {p.stderr}\n{block}"
        # a "\" before a comment escapes a space, not the newline: the next line runs on its own
        assert not re.search(r"\\[ \t]+#", block), f"{doc.name}: a continued line ends in a comment\n{block}"


def test_the_worked_example_runs_as_pasted(tmp_path):
    """From a checkout's root: `.venv/bin/virnucpro` there, `examples/` beside it, a fresh out/."""
    block = block_with("examples/sample.fna")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "virnucpro").symlink_to(Path(sys.executable).parent / "virnucpro")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    p = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=shell_env(tmp_path), capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    listed = set(p.stdout.split())
    assert {"prediction_results.txt", "prediction_results_highestscore.csv", "contig_summary.tsv",
            "skipped.tsv", "run.json"} <= listed, p.stdout


def test_the_real_model_example_reaches_virnucpro_s_own_checks(tmp_path):
    """With stand-in inputs and no weights, the pasted command is one virnucpro call that stops at
    its own checks (no GPU here, or the classifier: exit 2 or 3, one line), not a shell error."""
    block = block_with("--classifier 500_model.pth")
    (tmp_path / "contigs.fna").write_text(">c1\n" + "ACGTTGCAAT" * 60 + "\n")
    with gzip.open(tmp_path / "reads.fna.gz", "wt") as f:
        f.write(">r1\n" + "TTGACCGATA" * 15 + "\n")
    (tmp_path / "500_model.pth").write_bytes(b"not a checkpoint")
    p = subprocess.run(["bash", "-c", block], cwd=tmp_path, env=shell_env(tmp_path), capture_output=True,
                       text=True, timeout=600)
    assert p.returncode in (2, 3), (p.returncode, p.stderr[-2000:])
    assert "command not found" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "predictions").exists() or not any((tmp_path / "predictions").iterdir())
