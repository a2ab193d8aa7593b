"""Model files: the writer of random weights in the published formats, and every kind of bad model
file given to `virnucpro predict` (one line naming the file, exit code 3, nothing written)."""
import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from esm.data import Alphabet
from esm.model.esm2 import ESM2 as FairESM2
from esm.pretrained import load_model_and_alphabet_core
from conftest import FIXTURE, REAL_DNABERT
from virnucpro.errors import ModelLoadError
from virnucpro.models import dnabert, dnabert_load, esm2, esm2_load, weightfiles
from virnucpro.models.classifier_load import random_classifier, save_classifier
from virnucpro.presets import PRESETS

needs_shared = pytest.mark.skipif(not (FIXTURE / "dnabert_s_tiny").is_dir(), reason="../shared is not present")
FASTA = ">contig_1\n" + "ATGAAACGCATTAGCACCACCATTACCACCACCATCACCATTACCACAGGTAACGGTGCGGGCTGA" * 6 + "\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return weightfiles.model_files(tmp_path_factory.mktemp("models"), "tiny", seed=1)


def predict(tmp_path, files, **given):
    fasta = tmp_path / "in.fa"
    fasta.write_text(FASTA)
    models = {**files, **given}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "virnucpro", "predict", str(fasta), "-l", "300", "-o", str(out), "--device", "cpu",
           "--no-progress", "--esm", str(models["esm"]), "--dnabert", str(models["dnabert"]),
           "--classifier", str(models["classifier"])]
    return subprocess.run(cmd, capture_output=True, text=True), out


# ----------------------------------------------------------------------------- the writer

def test_written_files_run_predict(tmp_path, files):
    done, out = predict(tmp_path, files)
    assert done.returncode == 0, done.stderr
    run = json.loads((out / "in" / "run.json").read_text())
    assert run["weights"]["esm2"]["kind"] == "fair-esm" and run["weights"]["dnabert"]["kind"] == "hf"
    assert run["weights"]["classifier"]["path"] == str(files["classifier"].resolve())


def test_model_files_are_written_once(tmp_path):
    first = weightfiles.model_files(tmp_path, "tiny")
    stamps = {k: p.stat().st_mtime_ns for k, p in first.items()}
    assert weightfiles.model_files(tmp_path, "tiny") == first
    assert {k: p.stat().st_mtime_ns for k, p in first.items()} == stamps
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_fair_esm_file_is_what_fair_esm_reads(files):
    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(files["esm"], weights_only=True)
    assert set(data) == {"model", "args", "cfg"} and isinstance(data["cfg"]["model"], argparse.Namespace)
    assert {v.dtype for v in data["model"].values()} == {torch.float16}
    embed = data["model"]["encoder.sentence_encoder.embed_tokens.weight"]
    assert data["model"]["encoder.lm_head.weight"].data_ptr() == embed.data_ptr()  # tied, as in fair-esm
    # fair-esm's own loader: it refuses a missing or unexpected key (but the contact regression, a separate file).
    with pytest.warns(UserWarning, match="Regression weights not found"):
        fair, alphabet = load_model_and_alphabet_core(files["esm"].stem, data)
    fair = fair.float().eval()
    ours, info = esm2_load.load_esm2(str(files["esm"]))
    assert info["kind"] == "fair-esm" and info["layers"] == PRESETS["tiny"]["esm2"]["num_layers"]
    prots = ["MKTAYIAKQR", "ACDEFGHIKLMNPQRSTVWY" * 4, "M"]
    _, _, toks = alphabet.get_batch_converter()([(str(i), p) for i, p in enumerate(prots)])
    with torch.no_grad():
        rep = fair(toks, repr_layers=[fair.num_layers])["representations"][fair.num_layers]
        want = torch.stack([rep[i, 1:len(p) + 1].mean(0) for i, p in enumerate(prots)])
        got = ours.embed_packed(*esm2.pack(esm2.tokenize(prots), "cpu"))
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_fair_esm_full_shape_is_esm2_3b():
    shape = PRESETS["full"]["esm2"]
    written = weightfiles.fair_esm_shapes(shape["num_layers"], shape["embed_dim"], shape["attention_heads"])
    alphabet = Alphabet.from_architecture("ESM-1b")
    with torch.device("meta"):
        fair = FairESM2(shape["num_layers"], shape["embed_dim"], shape["attention_heads"], alphabet)
    # fair-esm's own renaming (pretrained.upgrade_state_dict): drop "encoder.sentence_encoder." or "encoder.".
    names = {k.removeprefix("encoder.").removeprefix("sentence_encoder."): s for k, (s, _) in written.items()}
    expected = {k: tuple(v.shape) for k, v in fair.state_dict().items()
                if not k.startswith("contact_head.") and k != "lm_head.weight"}
    assert names == expected
    assert 2.8e9 < sum(math.prod(s) for s, _ in written.values()) < 2.9e9


def test_dnabert_snapshot_has_the_published_layout(files):
    folder = files["dnabert"]
    assert {p.name for p in folder.iterdir()} == {"config.json", "pytorch_model.bin", "tokenizer.json",
                                                  "tokenizer_config.json", "special_tokens_map.json"}
    tok = json.loads((folder / "tokenizer.json").read_text())
    assert tok["padding"]["strategy"] == {"Fixed": 2000} and tok["truncation"]["max_length"] == 2000  # as the real file ships
    model, _, info = dnabert_load.load_dnabert(str(folder))
    assert info["kind"] == "hf" and info["dim"] == PRESETS["tiny"]["dnabert"]["hidden_size"]
    full = PRESETS["full"]["dnabert"]
    shapes = {k: s for k, (s, _) in weightfiles.dnabert_shapes(**full).items() if not k.startswith("pooler.")}
    with torch.device("meta"):
        meta = dnabert.DNABERTS(dnabert.DNABERTConfig(**full))
    renamed = dnabert_load.convert_state_dict({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    assert {k: tuple(v.shape) for k, v in renamed.items()} == {k: tuple(v.shape) for k, v in meta.state_dict().items()}


@needs_shared
def test_dnabert_snapshot_matches_the_fixture_and_its_reference_outputs(tmp_path, files):
    fixture = FIXTURE / "dnabert_s_tiny"
    written = torch.load(files["dnabert"] / "pytorch_model.bin", weights_only=True)
    real = torch.load(fixture / "pytorch_model.bin", weights_only=True)
    assert {k: (v.shape, v.dtype) for k, v in written.items()} == {k: (v.shape, v.dtype) for k, v in real.items()}
    assert json.loads((files["dnabert"] / "config.json").read_text()) == json.loads((fixture / "config.json").read_text())
    # The fixture's tensors written by the writer load to the published reference code's outputs.
    folder = weightfiles.save_dnabert_snapshot(tmp_path / "snap", real, weightfiles.dnabert_config(
        **{k: v for k, v in PRESETS["tiny"]["dnabert"].items()}))
    model, _, _ = dnabert_load.load_dnabert(str(folder))
    expected = torch.load(FIXTURE / "dnabert_s_tiny_expected.pt", weights_only=True)
    real_tok = dnabert_load.load_tokenizer(REAL_DNABERT / "tokenizer.json")
    ids = dnabert.tokenize(real_tok, expected["sequences"])
    with torch.inference_mode():
        got = model.embed_packed(*dnabert.pack(ids))
    assert (got - expected["embeddings"]).abs().max() < 1e-4


# ----------------------------------------------------------------------------- bad model files

def _copy_snapshot(files, tmp_path, edit=None):
    folder = tmp_path / "DNABERT-S"
    shutil.copytree(files["dnabert"], folder)
    if edit is not None:
        conf = json.loads((folder / "config.json").read_text())
        edit(conf)
        (folder / "config.json").write_text(json.dumps(conf))
    return folder


def _esm_folder(tmp_path, config, weights=b""):
    folder = tmp_path / "esm_hf"
    folder.mkdir()
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


ESM_TINY = {"position_embedding_type": "rotary", "num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4}


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return shutil.os.mkdir, (str(self.marker),)


def _empty(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    return tmp_path / name


def _nan_classifier(tmp_path, suffix):
    shape = PRESETS["tiny"]["classifier"]
    model = random_classifier(shape["input_dim"], shape["hidden_dim"], seed=0)
    with torch.no_grad():
        model.hidden_layer.weight[3, 5] = float("nan")
        model.bn1.running_var[0] = float("inf")
    path = tmp_path / f"nan{suffix}"
    if suffix == ".safetensors":
        save_classifier(model, path)
    else:
        torch.save(model.state_dict(), path)
    return path


CASES = {
    "empty .pth classifier": lambda t, f: ("classifier", _empty(t, "300_model.pth")),
    "empty .pt ESM-2": lambda t, f: ("esm", _empty(t, "esm2_t36_3B_UR50D.pt")),
    "DNABERT config not JSON": lambda t, f: ("dnabert", _write(_copy_snapshot(f, t) / "config.json", "{not json")),
    "DNABERT 7 heads for hidden 96": lambda t, f: ("dnabert", _copy_snapshot(
        f, t, lambda c: c.update(num_attention_heads=7)) / "config.json"),
    "DNABERT hidden size 10**9": lambda t, f: ("dnabert", _copy_snapshot(
        f, t, lambda c: c.update(hidden_size=10**9)) / "config.json"),
    "DNABERT hidden size 1e9": lambda t, f: ("dnabert", _copy_snapshot(
        f, t, lambda c: c.update(hidden_size=1e9)) / "config.json"),
    "DNABERT config a JSON list": lambda t, f: ("dnabert", _write(_copy_snapshot(f, t) / "config.json", "[1, 2]")),
    "DNABERT empty safetensors": lambda t, f: ("dnabert", _swap_weights(_copy_snapshot(f, t))),
    # Refused for its size where the host has less than 116 GB, else for its empty weights file: both name the folder.
    "ESM-2 config 36x8192, empty weights": lambda t, f: ("esm", _esm_folder(
        t, {**ESM_TINY, "num_hidden_layers": 36, "hidden_size": 8192, "num_attention_heads": 32})),
    "ESM-2 config a JSON list": lambda t, f: ("esm", _esm_folder(t, "[]") / "config.json"),
    "ESM-2 bad index.json": lambda t, f: ("esm", _bad_index(t)),
    "ESM-2 empty safetensors": lambda t, f: ("esm", _esm_folder(t, ESM_TINY) / "model.safetensors"),
    "ESM-2 pickle that runs code": lambda t, f: ("esm", _evil(t, "esm.pt", {"model": RunsCode(t / "ran")})),
    "classifier pickle that runs code": lambda t, f: ("classifier", _evil(
        t, "clf.pth", {"hidden_layer.weight": RunsCode(t / "ran")})),
    "classifier a plain pickle (protocol 4, torch warns)": lambda t, f: ("classifier", _pickled(t, [1, 2, 3])),
    "FASTA as --esm": lambda t, f: ("esm", _write(t / "proteins.pt", ">p1\nMKTAYIAKQR\n")),
    "NaN classifier (safetensors)": lambda t, f: ("classifier", _nan_classifier(t, ".safetensors")),
    "inf classifier (.pth)": lambda t, f: ("classifier", _nan_classifier(t, ".pth")),
}


def _pickled(tmp_path, obj):
    import pickle

    (tmp_path / "model.pth").write_bytes(pickle.dumps(obj, protocol=4))
    return tmp_path / "model.pth"


def _write(path, text):
    path.write_text(text)
    return path


def _swap_weights(folder):
    (folder / "pytorch_model.bin").unlink()
    return _empty(folder, "model.safetensors")


def _bad_index(tmp_path):
    folder = _esm_folder(tmp_path, ESM_TINY)
    (folder / "model.safetensors").unlink()
    return _write(folder / "model.safetensors.index.json", json.dumps({"weight_map": 5}))


def _evil(tmp_path, name, obj):
    torch.save(obj, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("case", CASES)
def test_bad_model_file_is_one_line_exit_3_nothing_written(tmp_path, files, case):
    option, bad = CASES[case](tmp_path, files)
    # A broken file of a snapshot is passed as its folder, and the message names the file itself.
    in_folder = bad.name in ("config.json", "model.safetensors", "model.safetensors.index.json")
    done, out = predict(tmp_path, files, **{option: bad.parent if in_folder else bad})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3, done.stderr
    assert len(lines) == 1 and lines[0].startswith("virnucpro: error: "), done.stderr
    assert str(bad) in lines[0], lines[0]
    assert "weights_only" not in done.stderr  # torch's advice to turn the safety off is never passed on
    assert not out.exists() and not (tmp_path / "ran").exists()


def test_esm2_weights_are_checked_before_anything_is_allocated(tmp_path, files, monkeypatch):
    tiny = torch.load(files["esm"], weights_only=False)["model"]
    state = {"esm." + k.replace("sentence_encoder.", ""): v.float() for k, v in list(tiny.items())[:3]}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    folder = _esm_folder(tmp_path, {**ESM_TINY, "num_hidden_layers": 36, "hidden_size": 8192,
                                    "num_attention_heads": 32}, (tmp_path / "w.safetensors").read_bytes())

    def allocate(*_):
        raise AssertionError("allocated before the weights were checked")

    monkeypatch.setattr(esm2_load, "_materialize", allocate)
    monkeypatch.setattr(esm2_load, "check_fits", lambda *a: None)  # as on a host with room for it
    with pytest.raises(ModelLoadError, match="not an ESM-2 checkpoint of this shape"):
        esm2_load.load_esm2(str(folder), device="cpu")


@pytest.mark.parametrize("loader", ["esm2", "dnabert"])
def test_model_larger_than_free_memory_is_refused_before_reading_weights(tmp_path, files, monkeypatch, loader):
    from virnucpro.models import hub

    monkeypatch.setattr(hub, "host_memory_available", lambda: 1000)
    with pytest.raises(ModelLoadError, match=r"more than the 0\.0 GB of host memory available"):
        if loader == "esm2":
            esm2_load.load_esm2(str(files["esm"]))
        else:
            dnabert_load.load_dnabert(str(files["dnabert"]))


def test_benchmark_runs_read_the_model_files_each_input_again(tmp_path, monkeypatch):
    from benchmarks import common

    monkeypatch.setenv("VIRNUCPRO_BENCH_PROFILE", "tiny")
    monkeypatch.setenv("VIRNUCPRO_BENCH_DATA", str(tmp_path / "bench"))
    files = common.model_files()
    assert all(Path(f).is_relative_to(tmp_path / "bench") for f in files.values())
    assert common.model_files() == files  # written once, then found
    a, b = tmp_path / "a.fa", tmp_path / "b.fa"
    a.write_text(FASTA)
    b.write_text(FASTA.replace("contig_1", "contig_2"))
    cmd = common.predict_command([str(a), str(b)], str(tmp_path / "out"), 1, ["--no-persistent-models"])
    assert "--random-weights" not in cmd
    common.run(cmd, 600)
    for stem in ("a", "b"):
        run = json.loads((tmp_path / "out" / stem / "run.json").read_text())
        assert run["persistent_models"] is False and run["random_weights"] is False
        assert run["weights"]["esm2"]["path"] == files["esm"] and run["weights"]["dnabert"]["kind"] == "hf"
        assert run["seconds"]["load_esm2"] > 0
