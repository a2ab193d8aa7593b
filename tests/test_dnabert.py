import math
from dataclasses import asdict
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import FIXTURE, REAL_DNABERT, naive_attention
from virnucpro import settings
from virnucpro.errors import ModelLoadError
from virnucpro.models import alibi, dnabert, dnabert_load
from virnucpro.presets import PRESETS

REAL = REAL_DNABERT
needs_shared = pytest.mark.skipif(not (FIXTURE / "dnabert_s_tiny").is_dir(), reason="../shared is not present")


def make_snapshot(folder: Path, weights: str = "bin", prefix: str = "") -> Path:
    """The tiny fixture model plus the real tokenizer files, as a Hugging Face snapshot."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE / "dnabert_s_tiny" / "config.json", folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(REAL / name, folder)
    state = torch.load(FIXTURE / "dnabert_s_tiny" / "pytorch_model.bin", weights_only=True)
    if prefix:
        state = {prefix + k: v for k, v in state.items()}
        state["cls.predictions.bias"] = torch.zeros(4096)  # an MLM head, as in BertForMaskedLM
    if weights == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def expected():
    return torch.load(FIXTURE / "dnabert_s_tiny_expected.pt", weights_only=True)


def embed_all(model, tok, seqs):
    tokens, cu, max_len = dnabert.pack(dnabert.tokenize(tok, seqs))
    with torch.inference_mode():
        return model.embed_packed(tokens, cu, max_len)


@needs_shared
def test_fixture_matches_reference_in_one_packed_batch(tmp_path, expected):
    model, tok, info = dnabert_load.load_dnabert(str(make_snapshot(tmp_path / "snap")))
    assert info["kind"] == "hf" and info["layers"] == 2 and info["dim"] == 96
    assert tok.padding is None and tok.truncation is None  # the shipped file has both on
    ids = dnabert.tokenize(tok, expected["sequences"])
    assert [len(i) for i in ids] == expected["token_counts"]
    assert [i[0] for i in ids] == [1] * len(ids) and [i[-1] for i in ids] == [2] * len(ids)
    got = embed_all(model, tok, expected["sequences"])
    assert got.dtype == torch.float32 and got.shape == expected["embeddings"].shape
    assert (got - expected["embeddings"]).abs().max() < 1e-4


@needs_shared
@pytest.mark.parametrize("weights,prefix", [("bin", "bert."), ("safetensors", ""), ("safetensors", "bert.")])
def test_checkpoint_variants_load(tmp_path, expected, weights, prefix):
    model, tok, _ = dnabert_load.load_dnabert(str(make_snapshot(tmp_path / "snap", weights, prefix)))
    got = embed_all(model, tok, expected["sequences"][:3])
    assert (got - expected["embeddings"][:3]).abs().max() < 1e-4


@needs_shared
def test_model_name_found_in_hf_cache(tmp_path, monkeypatch, expected):
    repo = tmp_path / "hf" / "hub" / "models--zhihan1996--DNABERT-S"
    make_snapshot(repo / "snapshots" / "0123abc")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    model, tok, info = dnabert_load.load_dnabert("zhihan1996/DNABERT-S")
    assert info["source"].endswith("0123abc")
    got = embed_all(model, tok, expected["sequences"][:1])
    assert (got - expected["embeddings"][:1]).abs().max() < 1e-4


def test_missing_source_names_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "hub_cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(ModelLoadError) as err:
        dnabert_load.load_dnabert("zhihan1996/DNABERT-S")
    msg = str(err.value)
    for place in ("hf_home/hub/models--zhihan1996--DNABERT-S", "hub_cache/models--zhihan1996--DNABERT-S",
                  "home/.cache/huggingface/hub/models--zhihan1996--DNABERT-S"):
        assert place in msg
    assert "huggingface-cli download zhihan1996/DNABERT-S" in msg
    with pytest.raises(ModelLoadError, match="no_such_folder"):
        dnabert_load.load_dnabert(str(tmp_path / "no_such_folder"))


def test_packed_batch_equals_one_sequence_at_a_time():
    model, tok, info = dnabert_load.load_dnabert("random:tiny", seed=3)
    assert info["kind"] == "random" and info["tokenizer"] == "stand-in"
    seqs = ["ACGT", "GATTACA" * 40, "A", "CCGGTTAAN" * 9, "TTGACA" * 70]
    packed = embed_all(model, tok, seqs)
    single = torch.cat([embed_all(model, tok, [s]) for s in seqs])
    assert torch.allclose(packed, single, atol=1e-5, rtol=1e-5)
    # Sequences must differ from each other, or the check above would prove little.
    assert torch.cdist(single, single).fill_diagonal_(1).min() > 1e-2


def test_alibi_slopes_follow_mosaicbert_rule():
    assert alibi.alibi_slopes(12).tolist() == pytest.approx(
        [2.0 ** -k for k in range(1, 9)] + [2.0 ** -0.5, 2.0 ** -1.5, 2.0 ** -2.5, 2.0 ** -3.5])
    assert alibi.alibi_slopes(8).tolist() == [2.0 ** -k for k in range(1, 9)]
    assert alibi.alibi_slopes(16).tolist() == pytest.approx([2.0 ** (-k / 2) for k in range(1, 17)])


def random_packed(lengths, heads=4, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    cu = torch.tensor([0] + lengths).cumsum(0).to(torch.int32)
    q, k, v = (torch.randn(sum(lengths), heads, dim, generator=g) for _ in range(3))
    # Large slopes so that the bias, not just the scores, shapes the result.
    slopes = torch.tensor([2.0, 0.5, 0.1, 0.01][:heads])
    return q, k, v, cu, max(lengths), slopes


def test_padded_sdpa_fallback_equals_naive_alibi_attention():
    q, k, v, cu, max_len, slopes = random_packed([1, 7, 30, 2, 13])
    got = alibi.packed_alibi_attention(q, k, v, cu, max_len, slopes, backend="sdpa")
    assert torch.allclose(got, naive_attention(q, k, v, cu, slopes), atol=1e-5)


FLEX_LENGTHS = [50] * 17 + [3, 77, 1, 128, 129, 20]  # 1208 tokens; sequences straddle block edges


@pytest.mark.parametrize("block", [128, 64])
def test_flex_block_mask_lists_exactly_the_blocks_with_same_sequence_pairs(monkeypatch, block):
    cu = torch.tensor([0] + FLEX_LENGTHS).cumsum(0)
    with settings.override(flex_block=block):
        T, bs = int(cu[-1]), alibi.flex_block()
        bm = alibi.PackedLayout(cu, max(FLEX_LENGTHS), T).block_mask
    nums, idx = bm.kv_num_blocks[0, 0].tolist(), bm.kv_indices[0, 0].tolist()
    listed = {(qb, kb) for qb, n in enumerate(nums) for kb in idx[qb][:n]}
    seq = torch.repeat_interleave(torch.arange(len(FLEX_LENGTHS)), torch.tensor(FLEX_LENGTHS))
    same = (seq[:, None] == seq[None, :]).nonzero()
    assert listed == {(i // bs, j // bs) for i, j in same.tolist()}
    assert bm.full_kv_num_blocks is None  # every listed block gets the mask_mod


@pytest.mark.parametrize("block", [128, 64])
def test_flex_attention_semantics_equal_sdpa(monkeypatch, block):
    """Uncompiled flex evaluates our score_mod and mask_mod densely: checks them
    without the minute-long CPU compile (the block lists are checked above)."""
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    q, k, v, cu, max_len, slopes = random_packed(FLEX_LENGTHS)
    sdpa = alibi.packed_alibi_attention(q, k, v, cu, max_len, slopes, backend="sdpa")
    with warnings.catch_warnings(), settings.override(flex_block=block), alibi.flex_function("cpu", flex.flex_attention):
        warnings.simplefilter("ignore")  # torch warns (once per process) that flex runs uncompiled
        got = alibi.packed_alibi_attention(q, k, v, cu, max_len, slopes, backend="flex")
    assert torch.allclose(got, sdpa, atol=1e-5)


@pytest.mark.skipif(not os.environ.get("VIRNUCPRO_COMPILE_TESTS"),
                    reason="compiling flex on CPU takes 20-60 s; set VIRNUCPRO_COMPILE_TESTS=1")
def test_compiled_flex_on_cpu_equals_sdpa():
    q, k, v, cu, max_len, slopes = random_packed(FLEX_LENGTHS)
    sdpa = alibi.packed_alibi_attention(q, k, v, cu, max_len, slopes, backend="sdpa")
    assert torch.allclose(alibi.packed_alibi_attention(q, k, v, cu, max_len, slopes, backend="flex"), sdpa, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dim", [16, 64])
def test_cuda_flex_equals_sdpa_across_batch_shapes(dim):
    # Three shapes: the second one makes torch.compile recompile with dynamic shapes.
    for seed, lengths in enumerate([FLEX_LENGTHS, [3, 500, 2, 64], [1] * 300 + [111] * 40]):
        q, k, v, cu, max_len, slopes = (x.cuda() if torch.is_tensor(x) else x
                                        for x in random_packed(lengths, dim=dim, seed=seed))
        sdpa = alibi.packed_alibi_attention(q, k, v, cu, max_len, slopes, backend="sdpa")
        flex = alibi.packed_alibi_attention(q, k, v, cu, max_len, slopes, backend="flex")
        assert torch.allclose(flex, sdpa, atol=2e-5), (lengths[:3], (flex - sdpa).abs().max())


def test_auto_backend_picks_flex_only_where_it_is_fast():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert alibi.flex_suits("cuda", torch.bfloat16, 64)
        assert not alibi.flex_suits("cuda", torch.float32, 64)
        assert not alibi.flex_suits("cuda", torch.bfloat16, 8)  # tiny preset: Triton needs >= 16
        assert not alibi.flex_suits("cpu", torch.bfloat16, 64)
        torch.set_float32_matmul_precision("high")  # TF32 makes fp32 flex fast
        assert alibi.flex_suits("cuda", torch.float32, 64)
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-3), (torch.bfloat16, 0.1)])
def test_cuda_model_matches_cpu(dtype, atol):
    seqs = ["ACGT" * 30, "GATTACA" * 40, "A", "TTGACA" * 70] * 5
    cpu_model, tok, _ = dnabert_load.load_dnabert("random:full", seed=5)
    cuda_model, _, _ = dnabert_load.load_dnabert("random:full", device="cuda", dtype=dtype, seed=5)
    cuda_model.load_state_dict(cpu_model.state_dict())  # generators differ per device
    want = embed_all(cpu_model, tok, seqs)
    tokens, cu, max_len = dnabert.pack(dnabert.tokenize(tok, seqs), device="cuda")
    with torch.inference_mode():
        got = cuda_model.embed_packed(tokens, cu, max_len).cpu()
    assert not alibi._flex_failed
    assert torch.allclose(got, want, atol=atol), (got - want).abs().max()
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.999


def test_random_weights_depend_only_on_seed():
    a, _, _ = dnabert_load.load_dnabert("random:tiny", seed=1)
    b, _, _ = dnabert_load.load_dnabert("random:tiny", seed=1)
    c, _, _ = dnabert_load.load_dnabert("random:tiny", seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[key], sb[key]) for key in sa)
    assert not torch.equal(sa["layers.0.qkv.weight"], sc["layers.0.qkv.weight"])
    assert sum(p.numel() for p in a.parameters()) == sum(
        p.numel() for p in dnabert.DNABERTS(dnabert.DNABERTConfig(**PRESETS["tiny"]["dnabert"])).parameters())


def test_random_bf16_is_made_in_bf16():
    model, tok, _ = dnabert_load.load_dnabert("random:tiny", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    out = embed_all(model, tok, ["ACGTACGT", "GGG"])
    assert out.dtype == torch.float32 and out.shape == (2, 96) and out.isfinite().all()


def test_full_preset_size_without_allocating():
    with torch.device("meta"):
        model = dnabert.DNABERTS(dnabert.DNABERTConfig(**PRESETS["full"]["dnabert"]))
    n = sum(p.numel() for p in model.parameters())
    assert 86e6 < n < 118e6
    if (REAL / "config.json").is_file():
        assert asdict(dnabert_load.config_from_json(REAL / "config.json")) == {
            **PRESETS["full"]["dnabert"], "type_vocab_size": 2, "layer_norm_eps": 1e-12}
