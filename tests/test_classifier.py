import pickle

import pytest
import torch

from virnucpro.models.classifier_load import load_classifier
from virnucpro.errors import ModelLoadError
from virnucpro.models.classifier_load import MLPClassifier, random_classifier, save_classifier


def test_original_pickle_format_reproduces_expected(shared_dir):
    ref = shared_dir / "reference" / "classifier"
    model = load_classifier(ref / "original_format_model.pth")
    assert isinstance(model, MLPClassifier) and not model.training
    expected = torch.load(ref / "original_format_model_expected.pt")
    with torch.no_grad():
        probs = torch.softmax(model(expected["features"]), dim=1)
    assert torch.allclose(probs, expected["probabilities"], atol=1e-6, rtol=0)


def test_safetensors_round_trip(tmp_path):
    model = random_classifier(160, 64, seed=3)
    save_classifier(model, tmp_path / "clf.safetensors")
    loaded = load_classifier(tmp_path / "clf.safetensors")
    x = torch.randn(8, 160)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.input_dim == 160


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_with_foreign_global_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"hidden_layer.weight": Evil()}, path)
    with pytest.raises(ModelLoadError, match="refusing to load.*builtins.print") as err:
        load_classifier(path)
    assert "pwned" not in capsys.readouterr().out
    assert "weights_only" not in str(err.value)  # torch's advice to switch the safety off is never passed on


def test_plain_pickle_and_missing_file_are_clear_errors(tmp_path):
    bad = tmp_path / "model.pth"
    bad.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ModelLoadError, match=str(bad)):
        load_classifier(bad)
    with pytest.raises(ModelLoadError, match="not found"):
        load_classifier(tmp_path / "absent.pth")


def test_state_dict_with_wrong_keys_is_refused(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"fc.weight": torch.zeros(2, 3)}, path)
    with pytest.raises(ModelLoadError, match="not a VirNucPro classifier"):
        load_classifier(path)


def test_random_classifier_is_seeded():
    x = torch.randn(4, 160)
    with torch.no_grad():
        a, b, c = (random_classifier(160, 64, seed=s)(x) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
