"""ESM-2's Triton rotary kernel (rotary_triton.py) against fused.rotary's arithmetic, in place on
views of one projection.  Without a GPU it runs in Triton's interpreter; skipped without Triton."""
import importlib.util
import os

import pytest
import torch

HAVE_TRITON = importlib.util.find_spec("triton") is not None
if HAVE_TRITON and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")


def tables(pos, head_dim):
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=pos.device).float() / head_dim))
    angle = pos[:, None, None].float() * inv
    return angle.cos(), angle.sin()


@pytest.mark.parametrize("T,H,D,dtype", [(1, 3, 8, torch.float32), (37, 5, 16, torch.float32),
                                         (300, 40, 128, torch.float32), (64, 4, 16, torch.bfloat16)])
def test_rotary_in_place_equals_the_fused_function(T, H, D, dtype):
    from virnucpro.models import fused, rotary_triton

    if os.environ.get("TRITON_INTERPRET") != "1" and DEVICE.type != "cuda":
        pytest.skip("Triton was imported before its interpreter could be switched on, and there is no GPU")
    g = torch.Generator().manual_seed(T)
    proj = torch.randn(T, 3 * H * D, generator=g).to(dtype).to(DEVICE)
    v_before = proj[:, 2 * H * D:].clone()
    q, k = proj[:, :H * D].view(T, H, D), proj[:, H * D:2 * H * D].view(T, H, D)
    cos, sin = tables(torch.randint(0, 1026, (T,), generator=g).to(DEVICE), D)
    want = fused._rotary(q.clone(), k.clone(), cos, sin)
    got = rotary_triton.rotary_(q, k, cos, sin)
    assert got[0].data_ptr() == q.data_ptr() and got[1].data_ptr() == k.data_ptr()  # in place
    ulp = 0.0 if dtype == torch.float32 else 2.0 ** -7
    for a, b in zip(got, want):
        # fp32: the same products; bf16: at most one rounding step apart (fused multiply-adds)
        assert ((a.float() - b.float()).abs() <= ulp * b.float().abs().clamp(min=1) + 1e-6).all()
    assert torch.equal(proj[:, 2 * H * D:], v_before)  # v, beside q and k, untouched
