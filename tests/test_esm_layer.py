"""VIRNUCPRO_ESM_LAYER=fused (esm2.ESM2._hidden_fused): the residual add done by the next LayerNorm's
kernel, both outputs (fused_triton.add_and_norm), and fc1's GELU in its GEMM's epilogue (the tanh
form).  Without a GPU the kernel runs in Triton's interpreter, switched on before it is defined."""
import importlib.util
import os

import pytest
import torch
import torch.nn.functional as F

from test_esm2 import fair_embed, ours_embed, proteins
from virnucpro import settings
from virnucpro.models import esm2_load

HAVE_TRITON = importlib.util.find_spec("triton") is not None
if HAVE_TRITON and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
needs_triton = pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")


def kernels():
    from virnucpro.models import fused_triton

    if not fused_triton.runs_on(DEVICE):
        pytest.skip("Triton was imported before TRITON_INTERPRET=1 could be set, and there is no GPU")
    return fused_triton


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_add_and_norm_writes_the_sum_and_its_layer_norm(dtype):
    ft = kernels()
    g = torch.Generator().manual_seed(3)
    x, y = (torch.randn(257, 160, generator=g) for _ in range(2))  # a width that is not a power of two
    w, b = 1 + 0.2 * torch.randn(160, generator=g), torch.randn(160, generator=g)
    x, y, w, b = (t.to(DEVICE, dtype) for t in (x, y, w, b))
    s, n = ft.add_and_norm(x, y[:, :], w, b, 1e-5)
    assert s.dtype == n.dtype == dtype and s.shape == n.shape == (257, 160)
    want_s = (x.float() + y.float()).to(dtype)  # rounded once, as an eager add leaves it
    ulp = 2.0 ** -7 if dtype == torch.bfloat16 else 1e-6
    assert ((s.float() - want_s.float()).abs() <= want_s.float().abs() * ulp).all()
    want_n = F.layer_norm(s.float(), (160,), w.float(), b.float(), 1e-5)
    assert ((n.float() - want_n).abs() <= want_n.abs() * ulp + 1e-5).all()
    empty = ft.add_and_norm(x[:0], y[:0], w, b, 1e-5)
    assert empty[0].shape == empty[1].shape == (0, 160)


def test_the_switch_defaults_to_today_s_path_and_refuses_unknown_values(monkeypatch):
    monkeypatch.delenv(settings.ESM_LAYER_ENV, raising=False)
    assert settings.esm_layer() == "eager"
    monkeypatch.setenv(settings.ESM_LAYER_ENV, "Fused")
    assert settings.esm_layer() == "fused"
    monkeypatch.setenv(settings.ESM_LAYER_ENV, "graphs")
    with pytest.raises(ValueError, match="VIRNUCPRO_ESM_LAYER='graphs'"):
        settings.esm_layer()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from test_esm2 import fair_model, save_fair

    fair = fair_model(3, 96, 4, seed=5)
    return fair, save_fair(fair, tmp_path_factory.mktemp("fair") / "small.pt")


def test_fused_layers_stay_within_the_fair_esm_tolerances(small):
    """fp32: the tanh GELU moves an embedding by about 1e-4 (the eager path is within 1e-5 of
    fair-esm); bf16: within the tolerance the bf16 weights are held to against fair-esm."""
    prots = proteins(seed=11, lengths=[1, 20, 80, 170])
    fair = fair_embed(small[0], prots)
    model, _ = esm2_load.load_esm2(str(small[1]))
    eager = ours_embed(model, prots)
    with settings.override(esm_layer="fused"):
        fused = ours_embed(model, prots)
    torch.testing.assert_close(eager, fair, atol=1e-5, rtol=0)
    assert not torch.equal(fused, eager)  # the switch takes another path
    torch.testing.assert_close(fused, fair, atol=1e-3, rtol=0)
    half, _ = esm2_load.load_esm2(str(small[1]), dtype=torch.bfloat16)
    with settings.override(esm_layer="fused"):
        torch.testing.assert_close(ours_embed(half, prots), fair, atol=0.1, rtol=0.05)
