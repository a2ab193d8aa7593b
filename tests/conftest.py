"""Paths and helpers shared by the test modules (import them with `from conftest import ...`)."""
import getpass
import math
import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

# Inductor's on-disk cache does not tell torch's CPU dispatch paths apart: kernels compiled under one
# ATEN_CPU_CAPABILITY were reused under another and gave values near 1e31, a C++ compile error or a
# malloc abort (AMD EPYC, torch 2.13).  A run under a chosen path keeps its own cache.
if os.environ.get("ATEN_CPU_CAPABILITY") and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(
        Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}_{os.environ['ATEN_CPU_CAPABILITY'].lower()}")

ROOT = Path(__file__).resolve().parents[1]
# The tools' library (scripts/suite, scripts/report) and the commands themselves, imported as a
# command imports them when Python runs it as a file: with scripts/ on the path.
sys.path.insert(0, str(ROOT / "scripts"))
DATA = Path(__file__).parent / "data"
# ../shared beside the checkout: reference data that must not be copied into the project.
SHARED = ROOT.parent / "shared"
FIXTURE = SHARED / "reference" / "fixtures"
REAL_DNABERT = SHARED / "reference" / "dnabert-s"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared reference data is not present")
    return SHARED


def naive_attention(q, k, v, cu, slopes=None):
    """Reference attention over packed sequences [T, H, Dh] (boundaries cu), one sequence at a time,
    in float64; with `slopes` [H], the ALiBi bias -slope * |i - j| is added to the scores."""
    out = []
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        qs, ks, vs = (x[a:b].transpose(0, 1).double() for x in (q, k, v))  # [H, L, Dh]
        scores = qs @ ks.transpose(1, 2) / math.sqrt(q.shape[-1])
        if slopes is not None:
            i = torch.arange(b - a)
            scores = scores - slopes.double()[:, None, None] * (i[:, None] - i).abs()
        out.append((scores.softmax(-1) @ vs).transpose(0, 1))
    return torch.cat(out).to(q.dtype)
