"""The fused elementwise functions: the same numbers as the unfused layer math, compiled or not."""
import torch
import torch.nn.functional as F

from virnucpro import settings
from virnucpro.models import fused


def _tables(pos, inv_freq):
    angle = pos[:, None, None].float() * inv_freq
    return angle.cos(), angle.sin()


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    T, H, Dh, D = 37, 4, 16, 64
    q, k = (torch.randn(T, H, Dh, generator=g).to(dtype) for _ in range(2))
    pos = torch.cat([torch.arange(20), torch.arange(17)])
    inv_freq = 1.0 / (10000 ** (torch.arange(0, Dh, 2).float() / Dh))
    x, y = (torch.randn(T, D, generator=g).to(dtype) for _ in range(2))
    norm = torch.nn.LayerNorm(D, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_(generator=g)
        norm.bias.normal_(generator=g)
    return q, k, pos, inv_freq, x, y, norm


def _rotate_half_reference(x, pos, inv_freq):
    # fair-esm's formulation: cos/sin duplicated over both halves, rotate_half.
    freqs = pos[:, None].float() * inv_freq[None]
    emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
    x1, x2 = x.chunk(2, dim=-1)
    return x * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()


def test_rotary_matches_fair_esm_formula():
    q, k, pos, inv_freq, *_ = _inputs()
    rq, rk = fused.rotary(q, k, *_tables(pos, inv_freq))
    torch.testing.assert_close(rq, _rotate_half_reference(q, pos, inv_freq))
    torch.testing.assert_close(rk, _rotate_half_reference(k, pos, inv_freq))


def test_rotary_keeps_dtype_and_is_exact_at_position_zero():
    q, k, pos, inv_freq, *_ = _inputs(torch.bfloat16)
    rq, rk = fused.rotary(q, k, *_tables(pos, inv_freq))
    assert rq.dtype == rk.dtype == torch.bfloat16
    starts = pos == 0
    assert torch.equal(rq[starts], q[starts]) and torch.equal(rk[starts], k[starts])


def test_norms_and_geglu_match_layer_math():
    *_, x, y, norm = _inputs()
    torch.testing.assert_close(fused.add_norm(x, y, norm), norm(x + y))
    g = torch.cat([x, y], dim=-1)
    torch.testing.assert_close(fused.geglu(g), F.gelu(x) * y)


def test_compile_failure_falls_back_to_eager_once(monkeypatch, caplog):
    calls = []

    def broken_compile(fn, **kw):
        def run(*a):
            calls.append(1)
            raise RuntimeError("no triton here")
        return run

    f = fused._Fusable(fused._geglu, token_args=(0,))
    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(fused._Fusable, "wants_compile", staticmethod(lambda x: True))
    h = torch.randn(5, 8)
    expected = fused._geglu(h)
    assert torch.equal(f(h), expected) and f.failed
    assert torch.equal(f(h), expected)
    assert len(calls) == 1  # not retried
    assert "running it unfused" in caplog.text


def test_disabled_runs_eager(monkeypatch):
    monkeypatch.setattr(fused._Fusable, "wants_compile", staticmethod(lambda x: True))
    f = fused._Fusable(fused._geglu, token_args=(0,))
    h = torch.randn(5, 8)
    with settings.override(fused=False):
        assert torch.equal(f(h), fused._geglu(h)) and f.compiled is None


def test_fused_setting_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(settings.FUSED_ENV, "0")
    assert not fused.enabled()
    monkeypatch.setenv(settings.FUSED_ENV, "1")
    assert fused.enabled()


def _qkv_views(T, H=4, Dh=16):
    # as DNABERT-S makes them: strided views of one [T, 3 x H x Dh] projection
    return torch.randn(T, 3 * H * Dh).view(T, 3, H, Dh).unbind(1)


def test_head_layout_copies_are_contiguous_transposes():
    q, k, v = _qkv_views(37)
    for x, y in zip((q, k, v), fused.heads_first(q, k, v)):
        assert y.shape == (1, 4, 37, 16) and y.is_contiguous()
        assert torch.equal(y[0].transpose(0, 1), x)
    out = torch.randn(4, 37, 16)
    back = fused.tokens_first(out)
    assert back.shape == (37, 4, 16) and back.is_contiguous() and torch.equal(back.transpose(0, 1), out)


def test_compiled_equals_eager_on_cpu():
    q, k, pos, inv_freq, x, y, norm = _inputs()
    for fn, args in ((fused._rotary, (q, k, *_tables(pos, inv_freq))),
                     (fused._add_norm, (x, y, norm.weight, norm.bias, norm.eps)),
                     (fused._geglu, (torch.cat([x, y], -1),)),
                     (fused._heads_first, _qkv_views(37)),
                     (fused._tokens_first, (torch.randn(4, 37, 16),))):
        compiled = torch.compile(fn, fullgraph=True)
        torch.testing.assert_close(compiled(*args), fn(*args), rtol=1e-5, atol=1e-5)
        # a second batch size: the recompilation with a symbolic token count
        short = tuple(a[:11] if isinstance(a, torch.Tensor) and a.shape[0] == 37 else a for a in args)
        if fn is fused._tokens_first:
            short = (args[0][:, :11],)
        torch.testing.assert_close(compiled(*short), fn(*short), rtol=1e-5, atol=1e-5)


def test_one_compilation_serves_every_batch_size(monkeypatch):
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()  # counts graphs, runs them eagerly: the CPU needs no compiler here
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, backend=counter, **kw))
    monkeypatch.setattr(fused._Fusable, "wants_compile", staticmethod(lambda x: True))
    torch._dynamo.reset()
    f = fused._Fusable(fused._add_norm, token_args=(0, 1))
    norm = torch.nn.LayerNorm(64)
    for tokens in (37, 11, 500, 64):  # 64 == the feature size: the weight must stay static
        x, y = torch.randn(tokens, 64), torch.randn(tokens, 64)
        torch.testing.assert_close(f(x, y, norm.weight, norm.bias, norm.eps), norm(x + y))
    assert counter.frame_count == 1 and not f.failed


def test_compiled_esm2_layers_compile_at_load_and_never_again(monkeypatch):
    """`--compile`: the layers are compiled at load with a symbolic token count, for one sequence
    and for several, so that batches of any size reuse those graphs.  Counted with Dynamo's CompileCounter, which
    runs the graphs eagerly: no compiler is needed to count."""
    from torch._dynamo.testing import CompileCounter

    from virnucpro import embed

    counter = CompileCounter()
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, backend=counter, **kw))
    torch._dynamo.reset()
    esm = embed.load_protein_model("random:tiny", "cpu", batch_tokens=400, compile=True)
    graphs = counter.frame_count  # compiled at load, for one sequence and for several
    gen = torch.Generator().manual_seed(0)
    letters = "LAGVSERTIDPKQNFYMHWC"

    def proteins(*lengths):
        return ["".join(letters[i] for i in torch.randint(20, (n,), generator=gen)) for n in lengths]

    assert graphs >= 2
    for batch in (proteins(30, 31, 60), proteins(5), proteins(*range(7, 200, 9)), proteins(390, 2, 3),
                  proteins(120) * 7, proteins(398)):
        assert esm.embed(batch).shape == (len(batch), esm.dim)
    assert counter.frame_count == graphs
