"""ESM-2 against fair-esm's own model (and transformers' EsmModel when installed) on random weights."""
import argparse
import os

import pytest
import torch

from esm.data import Alphabet
from esm.model.esm2 import ESM2 as FairESM2
from conftest import naive_attention
from virnucpro.errors import ModelLoadError
from virnucpro.models import esm2, esm2_load
from virnucpro.models.attention import packed_attention, padded_attention
from virnucpro.presets import PRESETS

ALPHABET = Alphabet.from_architecture("ESM-1b")
LETTERS = "ACDEFGHIKLMNPQRSTVWY" * 3 + "XBZU"
LENGTHS = [1, 2, 7, 31, 64, 100, 128, 170]


def proteins(seed=0, lengths=LENGTHS):
    gen = torch.Generator().manual_seed(seed)
    return ["".join(LETTERS[i] for i in torch.randint(len(LETTERS), (n,), generator=gen)) for n in lengths]


def fair_model(layers, dim, heads, seed=0):
    """fair-esm's ESM2 with every tensor random, LayerNorms and biases included."""
    torch.manual_seed(seed)
    model = FairESM2(layers, dim, heads, ALPHABET, token_dropout=True).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "layer_norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    return model


def save_fair(model, path, prefix="encoder.", state=None):
    state = model.state_dict() if state is None else state
    cfg = argparse.Namespace(encoder_layers=model.num_layers, encoder_embed_dim=model.embed_dim,
                             encoder_attention_heads=model.attention_heads, token_dropout=True)
    torch.save({"model": {prefix + k: v for k, v in state.items()}, "cfg": {"model": cfg}}, path)
    return path


@torch.no_grad()
def fair_embed(model, prots):
    _, _, toks = ALPHABET.get_batch_converter()([(str(i), p) for i, p in enumerate(prots)])
    rep = model(toks, repr_layers=[model.num_layers])["representations"][model.num_layers]
    return torch.stack([rep[i, 1:len(p) + 1].mean(0) for i, p in enumerate(prots)])


@torch.no_grad()
def ours_embed(model, prots):
    tokens, cu, max_len = esm2.pack(esm2.tokenize(prots), "cpu")
    return model.embed_packed(tokens, cu, max_len)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    fair = fair_model(2, 64, 4)
    return fair, save_fair(fair, tmp_path_factory.mktemp("fair") / "small.pt")


def test_tokenize_matches_fair_esm_alphabet():
    prot = "LAGVSERTIDPKQNFYMHWCXBUZO.-"
    assert esm2.tokenize([prot]) == [[ALPHABET.cls_idx, *ALPHABET.encode(prot), ALPHABET.eos_idx]]
    assert esm2.ALPHABET == tuple(ALPHABET.all_toks)
    assert (esm2.CLS, esm2.PAD, esm2.EOS, esm2.UNK, esm2.MASK) == (0, 1, 2, 3, 32)
    assert esm2.tokenize(["MJ*k", ""]) == [[0, 20, 3, 3, 3, 2], [0, 2]]


@pytest.mark.parametrize("shape, prefix", [((2, 64, 4), "encoder."), ((3, 96, 6), "encoder.sentence_encoder.")])
def test_equals_fair_esm(tmp_path, shape, prefix):
    fair = fair_model(*shape, seed=sum(shape))
    model, info = esm2_load.load_esm2(str(save_fair(fair, tmp_path / "m.pt", prefix)))
    assert (info["kind"], info["layers"], info["dim"], info["heads"]) == ("fair-esm", *shape)
    prots = proteins(seed=shape[0])
    diff = (ours_embed(model, prots) - fair_embed(fair, prots)).abs().max(dim=1).values
    assert diff.max() < 1e-4, diff


def test_token_dropout_rescales_sequences_with_masks(small):
    fair, path = small
    model, _ = esm2_load.load_esm2(str(path))
    seqs = [[0, 5, 32, 7, 32, 9, 2], [0, 20, 15, 7, 2]]  # the first has 2 masks in 7 tokens
    toks = torch.full((2, 7), ALPHABET.padding_idx)
    for i, s in enumerate(seqs):
        toks[i, :len(s)] = torch.tensor(s)
    with torch.no_grad():
        ref = fair(toks, repr_layers=[2])["representations"][2]
        ours = model(*esm2.pack(seqs))
    torch.testing.assert_close(ours[:7], ref[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[7:], ref[1, :5], atol=1e-5, rtol=0)


def test_packed_batch_equals_one_at_a_time(small):
    model, _ = esm2_load.load_esm2(str(small[1]))
    prots = proteins(seed=3)
    single = torch.cat([ours_embed(model, [p]) for p in prots])
    torch.testing.assert_close(ours_embed(model, prots), single, atol=1e-5, rtol=0)


def test_packed_attention_fallback_equals_naive():
    gen = torch.Generator().manual_seed(0)
    lengths = [1, 9, 4, 30, 2]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    q, k, v = (torch.randn(sum(lengths), 3, 8, generator=gen) for _ in range(3))
    ref = naive_attention(q, k, v, cu)
    torch.testing.assert_close(padded_attention(q, k, v, cu, max(lengths)), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(packed_attention(q, k, v, cu, max(lengths)), ref, atol=1e-5, rtol=0)


def test_inv_freq_comes_from_checkpoint(tmp_path, small):
    fair, path = small
    base, _ = esm2_load.load_esm2(str(path))
    # Real checkpoints hold fp16-rounded inv_freq; a shifted one must be used as stored.
    state = {k: (v * 1.05).half() if k.endswith("inv_freq") else v for k, v in fair.state_dict().items()}
    changed, _ = esm2_load.load_esm2(str(save_fair(fair, tmp_path / "f.pt", state=state)))
    stored = state["layers.1.self_attn.rot_emb.inv_freq"].float()
    assert torch.equal(changed.layers[1].self_attn.rot_emb.inv_freq, stored)
    prots = proteins(seed=5, lengths=[40, 90])
    assert (ours_embed(changed, prots) - ours_embed(base, prots)).abs().max() > 1e-3
    fair_changed = fair_model(2, 64, 4)
    fair_changed.load_state_dict(state)
    torch.testing.assert_close(ours_embed(changed, prots), fair_embed(fair_changed, prots), atol=1e-4, rtol=0)


def test_checkpoint_without_inv_freq_uses_fair_esm_formula(tmp_path, small):
    fair, _ = small
    state = {k: v for k, v in fair.state_dict().items() if not k.endswith("inv_freq")}
    model, _ = esm2_load.load_esm2(str(save_fair(fair, tmp_path / "n.pt", state=state)))
    prots = proteins(seed=6, lengths=[12, 50])
    torch.testing.assert_close(ours_embed(model, prots), fair_embed(fair, prots), atol=1e-4, rtol=0)


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.pop("layers.1.fc2.weight"), "missing layers.1.fc2.weight"),
    (lambda s: s.update({"layers.2.fc1.weight": s["layers.1.fc1.weight"]}), "unexpected encoder.layers.2.fc1.weight"),
    (lambda s: s.update({"emb_layer_norm_after.weight": torch.ones(65)}), "shape (65,)"),
])
def test_checkpoint_that_does_not_fit_is_refused(tmp_path, small, edit, words):
    state = dict(small[0].state_dict())
    edit(state)
    with pytest.raises(ModelLoadError, match=r"(?s)" + words.replace("(", r"\(").replace(")", r"\)")):
        esm2_load.load_esm2(str(save_fair(small[0], tmp_path / "bad.pt", state=state)))


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "was_run"
    torch.save({"model": {}, "cfg": {"model": RunsCode(marker)}}, tmp_path / "evil.pt")
    with pytest.raises(ModelLoadError, match="mkdir"):
        esm2_load.load_esm2(str(tmp_path / "evil.pt"))
    assert not marker.exists()


# Our module names -> transformers' EsmForMaskedLM names, old layout (inv_freq per layer).
HF_PARTS = {"self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
            "self_attn.v_proj": "attention.self.value", "self_attn.out_proj": "attention.output.dense",
            "self_attn.rot_emb": "attention.self.rotary_embeddings", "self_attn_layer_norm": "attention.LayerNorm",
            "fc1": "intermediate.dense", "fc2": "output.dense", "final_layer_norm": "LayerNorm"}


def hf_name(key):
    if key.startswith(("lm_head", "contact_head")):
        return key if key.startswith("lm_head") else "esm." + key
    if key == "embed_tokens.weight":
        return "esm.embeddings.word_embeddings.weight"
    if key.startswith("emb_layer_norm_after"):
        return "esm.encoder." + key
    _, i, rest = key.split(".", 2)
    part, leaf = rest.rsplit(".", 1)
    return f"esm.encoder.layer.{i}.{HF_PARTS[part]}.{leaf}"


def write_hf_folder(folder, fair):
    import json

    folder.mkdir(parents=True)
    conf = {"model_type": "esm", "num_hidden_layers": fair.num_layers, "hidden_size": fair.embed_dim,
            "num_attention_heads": fair.attention_heads, "intermediate_size": 4 * fair.embed_dim,
            "position_embedding_type": "rotary", "emb_layer_norm_before": False, "token_dropout": True,
            "layer_norm_eps": 1e-5, "vocab_size": 33}
    (folder / "config.json").write_text(json.dumps(conf))
    torch.save({hf_name(k): v for k, v in fair.state_dict().items()}, folder / "pytorch_model.bin")
    return folder


def test_hf_folder_loads(tmp_path, small):
    fair, _ = small
    model, info = esm2_load.load_esm2(str(write_hf_folder(tmp_path / "snap", fair)))
    assert info["kind"] == "hf"
    prots = proteins(seed=7, lengths=[3, 66, 120])
    torch.testing.assert_close(ours_embed(model, prots), fair_embed(fair, prots), atol=1e-4, rtol=0)


@pytest.mark.parametrize("masked_lm", [False, True])
def test_equals_transformers_esm(tmp_path, masked_lm):
    transformers = pytest.importorskip("transformers")
    conf = transformers.EsmConfig(vocab_size=33, hidden_size=96, num_hidden_layers=2, num_attention_heads=6,
                                  intermediate_size=384, position_embedding_type="rotary", token_dropout=True,
                                  mask_token_id=32, pad_token_id=1, layer_norm_eps=1e-5, emb_layer_norm_before=False)
    torch.manual_seed(1)
    hf = (transformers.EsmForMaskedLM(conf) if masked_lm else transformers.EsmModel(conf, add_pooling_layer=False))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "LayerNorm" in name or "layer_norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    hf.eval().save_pretrained(tmp_path / "hf")
    model, _ = esm2_load.load_esm2(str(tmp_path / "hf"))
    prots = proteins(seed=8, lengths=[1, 40, 99])
    body = hf.esm if masked_lm else hf
    with torch.no_grad():
        ref = torch.stack([body(torch.tensor(t)[None]).last_hidden_state[0, 1:-1].mean(0) for t in esm2.tokenize(prots)])
    torch.testing.assert_close(ours_embed(model, prots), ref, atol=1e-4, rtol=0)


def test_names_are_looked_up_in_the_caches(tmp_path, monkeypatch, small):
    fair, path = small
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "esm2_t2_test.pt").write_bytes(path.read_bytes())
    assert esm2_load.load_esm2("esm2_t2_test")[1]["path"] == str(hub / "esm2_t2_test.pt")
    repo = tmp_path / "hf" / "hub" / "models--facebook--esm2_hf_test"
    write_hf_folder(repo / "snapshots" / "abc123", fair)
    assert esm2_load.load_esm2("facebook/esm2_hf_test")[1]["path"] == str(repo / "snapshots" / "abc123")


def test_missing_source_lists_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hubcache"))
    with pytest.raises(ModelLoadError) as err:
        esm2_load.load_esm2("facebook/esm2_t36_3B_UR50D")
    msg = str(err.value)
    for place in ("torch/hub/checkpoints/esm2_t36_3B_UR50D.pt", "hubcache/models--facebook--esm2_t36_3B_UR50D",
                  "hf/hub/models--facebook--esm2_t36_3B_UR50D", "huggingface-cli download facebook/esm2_t36_3B_UR50D",
                  "fair-esm/models/esm2_t36_3B_UR50D.pt"):
        assert place in msg
    with pytest.raises(ModelLoadError, match="random:tiny"):
        esm2_load.load_esm2(str(tmp_path / "no" / "such.pt"))


def test_random_tiny_is_seeded():
    prots = proteins(seed=9, lengths=[5, 50])
    a, info = esm2_load.load_esm2("random:tiny", seed=1)
    b, _ = esm2_load.load_esm2("random:tiny", seed=1)
    c, _ = esm2_load.load_esm2("random:tiny", seed=2)
    assert info["kind"] == "random" and info["dim"] == PRESETS["tiny"]["esm2"]["embed_dim"]
    assert info["attention"] == "padded-sdpa"  # CPU: no FlashAttention
    ea, eb, ec = (ours_embed(m, prots) for m in (a, b, c))
    assert torch.equal(ea, eb) and (ea - ec).abs().max() > 1e-2
    assert ea.std(dim=1).min() > 0.1  # not collapsed to a constant vector
    assert a.layers[0].final_layer_norm.weight.eq(1).all()


def test_bf16_weights_keep_fp32_rotary_and_pooling(small):
    prots = proteins(seed=10, lengths=[20, 80])
    model, info = esm2_load.load_esm2(str(small[1]), dtype=torch.bfloat16)
    assert info["dtype"] == "bfloat16" and model.layers[0].fc1.weight.dtype == torch.bfloat16
    assert model.layers[0].self_attn.rot_emb.inv_freq.dtype == torch.float32
    out = ours_embed(model, prots)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, fair_embed(small[0], prots), atol=0.1, rtol=0.05)
