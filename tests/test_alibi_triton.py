"""The Triton ALiBi attention kernel and its elementwise companions (alibi_triton.py, fused_triton.py):
against naive attention at many packings, and through the tiny DNABERT-S against the fixture.

Without a GPU the kernels run in Triton's interpreter, which must be switched on before the kernels
are defined.  Everything that needs Triton skips where it cannot be imported."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import naive_attention
from test_dnabert import FIXTURE, embed_all, make_snapshot, needs_shared, random_packed
from virnucpro.errors import InputError, VirnucproError
from virnucpro.models import alibi, dnabert, dnabert_load, fused

HAVE_TRITON = importlib.util.find_spec("triton") is not None
if HAVE_TRITON and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def kernels():
    from virnucpro.models import alibi_triton, fused_triton

    if not alibi_triton.runs_on(DEVICE):
        pytest.skip("Triton was imported before TRITON_INTERPRET=1 could be set, and there is no GPU")
    return alibi_triton, fused_triton


needs_triton = pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")

PACKINGS = [[1], [2], [1, 2, 3], [7], [65], [129, 3, 200], [1] * 100, [50] * 17 + [3, 77, 1, 128, 129, 20]]


def on_device(*xs):
    return [x.to(DEVICE) if torch.is_tensor(x) else x for x in xs]


@needs_triton
@pytest.mark.parametrize("lengths", PACKINGS, ids=lambda ls: f"{len(ls)}seqs-{sum(ls)}tok")
@pytest.mark.parametrize("dim", [8, 16])
def test_fp32_kernel_equals_naive_attention(lengths, dim):
    at, _ = kernels()
    q, k, v, cu, _, slopes = on_device(*random_packed(lengths, dim=dim, seed=len(lengths)))
    got = at.packed_alibi_attention(q, k, v, cu, slopes)
    want = naive_attention(q.cpu(), k.cpu(), v.cpu(), cu.cpu(), slopes.cpu())
    assert got.shape == q.shape and got.is_contiguous()
    assert (got.cpu() - want).abs().max() < 2e-5


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_kernel_on_strided_projection_views(dtype):
    """q, k, v as DNABERT-S makes them: views into one [T, 3, H, Dh] projection, head_dim 64."""
    at, _ = kernels()
    lengths = [1, 90, 130, 2, 77, 64, 5]
    g = torch.Generator().manual_seed(1)
    T, H, Dh = sum(lengths), 4, 64
    qkv = torch.randn(T, 3, H, Dh, generator=g).to(DEVICE, dtype)
    q, k, v = qkv.unbind(1)
    assert not q.is_contiguous()
    cu = torch.tensor([0] + lengths).cumsum(0).to(torch.int32).to(DEVICE)
    slopes = alibi.alibi_slopes(H).to(DEVICE) * 8  # steep, so that the bias matters
    got = at.packed_alibi_attention(q, k, v, cu, slopes).cpu().float()
    want = naive_attention(*(x.cpu().float() for x in (q, k, v)), cu.cpu(), slopes.cpu())
    assert got.isfinite().all()
    # bf16 keeps 8 bits: probabilities and outputs are rounded to it.
    assert (got - want).abs().max() < (3e-2 if dtype == torch.bfloat16 else 4e-3)


@needs_triton
def test_empty_batch_and_given_sequence_index():
    at, _ = kernels()
    q = torch.empty(0, 2, 16, device=DEVICE)
    assert at.packed_alibi_attention(q, q, q, torch.zeros(1, dtype=torch.int32, device=DEVICE),
                                     torch.ones(2, device=DEVICE)).shape == (0, 2, 16)
    q, k, v, cu, _, slopes = on_device(*random_packed([3, 4, 5]))
    seq = at.sequence_index(cu, 12)
    assert seq.tolist() == [0] * 3 + [1] * 4 + [2] * 5 and seq.dtype == torch.int32
    assert torch.equal(at.packed_alibi_attention(q, k, v, cu, slopes, seq), at.packed_alibi_attention(q, k, v, cu, slopes))


def within_rounding(got, want, dtype):
    """fp32: to 1e-5; bf16: one rounding of an fp32 result (Triton's interpreter truncates, so one ulp)."""
    ulp = 2.0 ** -7 if dtype == torch.bfloat16 else 1e-6
    return bool(((got.float().cpu() - want.cpu()).abs() <= want.cpu().abs() * ulp + 1e-5).all())


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_add_norm_and_geglu_equal_pytorch(dtype):
    _, ft = kernels()
    g = torch.Generator().manual_seed(2)
    x, y = (torch.randn(301, 96, generator=g) for _ in range(2))
    w, b = torch.randn(96, generator=g), torch.randn(96, generator=g)
    h = torch.randn(301, 2 * 1100, generator=g)  # wider than one tile, and not a power of two
    x, y, w, b, h = (t.to(DEVICE, dtype) for t in (x, y, w, b, h))
    got = ft.add_norm(x, y, w, b, 1e-12)
    assert got.dtype == dtype
    assert within_rounding(got, F.layer_norm(x.float() + y.float(), (96,), w.float(), b.float(), 1e-12), dtype)
    gate, value = h.float().chunk(2, dim=-1)
    got = ft.geglu(h)
    assert got.shape == (301, 1100) and within_rounding(got, F.gelu(gate) * value, dtype)


def count_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.fixture
def compiles(monkeypatch):
    """torch.compile calls, with fused.py's Inductor path taken as on a GPU (CPU runs it eagerly)."""
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **k: seen.append(getattr(fn, "__name__", fn)) or fn)
    monkeypatch.setattr(fused._Fusable, "wants_compile", staticmethod(lambda x: True))
    for f in (fused._add_norm_f, fused._geglu_f, fused._heads_first_f, fused._tokens_first_f):
        monkeypatch.setattr(f, "compiled", None)
    return seen


@needs_triton
@needs_shared
def test_tiny_model_with_triton_matches_fixture_and_compiles_nothing(tmp_path, monkeypatch, compiles):
    at, ft = kernels()
    expected = torch.load(FIXTURE / "dnabert_s_tiny_expected.pt", weights_only=True)
    model, tok, _ = dnabert_load.load_dnabert(str(make_snapshot(tmp_path / "snap")), device=DEVICE)
    attn = count_calls(monkeypatch, at, "packed_alibi_attention")
    norms, geglus = count_calls(monkeypatch, ft, "add_norm"), count_calls(monkeypatch, ft, "geglu")
    monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, "triton")
    got = embed_all(model, tok, expected["sequences"]).cpu()
    assert (got - expected["embeddings"]).abs().max() < 1e-4
    assert (len(attn), len(norms), len(geglus)) == (2, 4, 2)  # 2 layers
    assert compiles == []
    # The default path, under the same watch, does reach for torch.compile.
    monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, "flex")
    embed_all(model, tok, expected["sequences"][:2])
    assert "_add_norm" in compiles and "_geglu" in compiles and len(attn) == 2


@needs_triton
def test_random_tiny_model_triton_equals_sdpa_path(monkeypatch):
    kernels()
    model, tok, _ = dnabert_load.load_dnabert("random:tiny", device=DEVICE, seed=4)
    seqs = ["ACGT", "GATTACA" * 40, "A", "CCGGTTAAN" * 9, "TTGACA" * 70]
    monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, "flex")
    monkeypatch.setattr(alibi, "flex_suits", lambda *a: False)
    want = embed_all(model, tok, seqs)
    monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, "auto")  # Triton on a GPU for fast dtypes only, as flex
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    on_gpu = "triton" if DEVICE.type == "cuda" else "auto"  # never the interpreter in a CPU run
    assert (alibi.dna_backend(DEVICE, torch.bfloat16), alibi.dna_backend(DEVICE, torch.float32)) == (on_gpu, "auto")
    monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, "triton")
    assert alibi.dna_backend(DEVICE, torch.float32) == "triton"
    got = embed_all(model, tok, seqs)
    assert (got - want).abs().max() < 1e-5


class _NoDevice:
    @staticmethod
    def runs_on(device):
        return False


def test_setting_picks_backend_and_rejects_unknown_values(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(alibi.DNA_ATTENTION_ENV, raising=False)
    assert alibi.dna_attention() == "auto"
    monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, "flex")
    assert alibi.dna_backend(cpu, torch.bfloat16) == "auto"
    monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, "Triton ")
    assert alibi.dna_attention() == "triton"
    monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, "fast")
    with pytest.raises(InputError, match="VIRNUCPRO_DNA_ATTENTION='fast': expected one of flex, triton, auto"):
        alibi.dna_backend(cpu, torch.bfloat16)
    with pytest.raises(InputError, match="VIRNUCPRO_DNA_ATTENTION"):  # at load, before anything is written
        dnabert_load.load_dnabert("random:tiny")
    # Triton cannot be imported: "triton" says so, "auto" goes the flex way.
    monkeypatch.setattr(alibi, "_triton_kernels", lambda: (None, "ModuleNotFoundError: No module named 'triton'"))
    monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, "triton")
    with pytest.raises(VirnucproError, match="No module named 'triton'.*VIRNUCPRO_DNA_ATTENTION=flex"):
        alibi.dna_backend(torch.device("cuda"), torch.bfloat16)
    monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, "auto")
    assert alibi.dna_backend(torch.device("cuda"), torch.bfloat16) == "auto"
    # Importable, but not for this device (a CPU without the interpreter).
    monkeypatch.setattr(alibi, "_triton_kernels", lambda: (_NoDevice, None))
    for setting in ("auto", "triton"):
        monkeypatch.setenv(alibi.DNA_ATTENTION_ENV, setting)
        assert alibi.dna_backend(cpu, torch.bfloat16) == "auto"



AOT = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from virnucpro.models import alibi_triton as at, fused_triton as ft

assert not at.INTERPRETED


def build(fn, types, constexprs, **options):
    types = {**types, **{c: "constexpr" for c in constexprs}}
    src = ASTSource(fn=fn, signature={name: types[name] for name in fn.arg_names}, constexprs=constexprs)
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)  # an H100 / H200
    assert kernel.asm["cubin"], fn.__name__


ints = lambda *names: {n: "i32" for n in names}
strides = [f"stride_{x}{y}" for x in "qkvo" for y in "th"]
for dtype, precision in (("bf16", "tf32"), ("fp16", "tf32"), ("fp32", "ieee")):
    ptr = "*" + dtype
    for dim, bm, bn in ((64, at.BLOCK_M, at.BLOCK_N), (8, at.BLOCK_M, at.BLOCK_N), (64, 128, 32)):
        build(at._alibi_attention_kernel,
              {**dict.fromkeys("QKVO", ptr), "SEQ": "*i32", "CU": "*i32", "SLOPES": "*fp32", "qk_scale": "fp32",
               **ints("T", *strides)},
              dict(HEAD_DIM=dim, BLOCK_D=max(16, dim), BLOCK_M=bm, BLOCK_N=bn, PRECISION=precision, UPCAST=False),
              num_warps=at.NUM_WARPS, num_stages=at.NUM_STAGES)
    for keep_sum, d, block, rows in ((False, 768, 1024, 4), (True, 2560, 4096, 1)):  # DNABERT-S's; ESM-2's
        build(ft._add_norm_kernel, {**dict.fromkeys(["X", "Y", "W", "B", "S", "OUT"], ptr), "eps": "fp32",
                                    **ints("T", "stride_x", "stride_y", "stride_s", "stride_o")},
              dict(D=d, BLOCK=block, ROWS=rows, KEEP_SUM=keep_sum))
    build(ft._geglu_kernel, {"H": ptr, "OUT": ptr, **ints("T", "stride_h", "stride_o")}, dict(F=3072, BLOCK=1024, ROWS=4))
print("compiled")
"""


@needs_triton
def test_kernels_compile_for_hopper_without_a_gpu(tmp_path):
    """The interpreter does not apply the GPU compiler's rules; Triton's own compiler (ptxas is in
    its wheel) builds H200 machine code on any host."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.run([sys.executable, "-c", AOT], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "compiled" in p.stdout, p.stderr[-3000:]
