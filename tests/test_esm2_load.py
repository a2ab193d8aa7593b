"""ESM-2's loading at full size and through the GPU's staged copy, without a GPU."""
import pytest
import torch

from virnucpro.models import esm2_load


def test_random_full_has_the_3b_shape_without_allocating():
    model, info = esm2_load.load_esm2("random:full", device="meta", dtype=torch.bfloat16)
    d, layers = 2560, 36
    per_layer = 4 * (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d) + 4 * d
    assert sum(p.numel() for p in model.parameters()) == 33 * d + layers * per_layer + 2 * d  # ~2.83e9
    assert all(p.is_meta for p in model.parameters())
    assert (info["layers"], info["dim"], info["heads"]) == (36, 2560, 40)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_staged_copy_gives_the_bits_of_a_direct_copy(tmp_path, monkeypatch, dtype):
    """The GPU load path (pinned buffers, tensors split across them, converted after the copy), run
    on the CPU with buffers small enough that tensors straddle them and the buffers are reused."""
    from virnucpro.models import weightfiles

    path = weightfiles.write_fair_esm(tmp_path / "esm2_tiny.pt", "tiny", seed=4)
    direct, _ = esm2_load.load_esm2(str(path), dtype=dtype)
    staged = esm2_load.staged_copy
    monkeypatch.setattr(esm2_load, "staged_copy", lambda pairs, device: staged(pairs, device, stage_bytes=1000))
    got, _ = esm2_load.load_esm2(str(path), dtype=dtype)
    want = direct.state_dict()
    assert any(v.numel() * 2 > 1000 for v in want.values())  # some tensors span several buffers
    for name, value in got.state_dict().items():
        assert value.dtype == want[name].dtype
        assert torch.equal(value.view(-1).view(torch.uint8), want[name].view(-1).view(torch.uint8)), name
    assert want["layers.0.fc1.weight"].abs().sum() > 0
