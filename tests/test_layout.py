"""The same bytes whatever the batch layout (docs/RELIABILITY.md): a row's results depend on its own
sequence only, not on the range, the token budget, the number of processes or a resume."""
import numpy as np
import pytest
import torch

from conftest import DATA
from virnucpro import embed
from virnucpro.cli import main
from virnucpro.runner import ROW_BLOCK, filled, in_row_blocks, row_count

TINY = ["--random-weights", "--preset", "tiny", "--device", "cpu", "--no-progress"]
FILES = ("prediction_results.txt", "prediction_results_highestscore.csv", "contig_summary.tsv", "skipped.tsv")
LAYOUTS = {  # several per range, small budgets (steps of a few sequences) and one step for all
    "checkpoint-every 8": ["--checkpoint-every", "8"],
    "checkpoint-every 64": ["--checkpoint-every", "64"],
    "batch-tokens 64": ["--batch-tokens", "64"],
    "batch-tokens 100000": ["--batch-tokens", "100000"],
    "cpu-workers 2": ["--cpu-workers", "2", "--checkpoint-every", "16"],
}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("default") / "out"
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", *TINY, "--keep-intermediate", "-o", str(out)]) == 0
    return out / "KK037166"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_results_are_byte_identical_whatever_the_layout(tmp_path, default_run, layout):
    out = tmp_path / "out"
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", *TINY, "--keep-intermediate",
                 "-o", str(out), *LAYOUTS[layout]]) == 0
    features = np.load(out / "KK037166" / "intermediate" / "features.npy") \
        if (out / "KK037166" / "intermediate" / "features.npy").exists() else None
    if features is not None:  # first, as it names the rows and columns that moved
        want = np.load(default_run / "intermediate" / "features.npy")
        moved = np.flatnonzero((features != want).any(axis=1))
        assert moved.size == 0, f"{moved.size} ORF rows differ, first {moved[:5]}"
    for name in FILES:
        assert (out / "KK037166" / name).read_bytes() == (default_run / name).read_bytes(), name


@pytest.mark.parametrize("model", ["esm2", "dnabert"])
def test_a_sequence_s_embedding_does_not_depend_on_its_batch(model):
    """Budgets from one sequence per step to all in one, and the same sequences in another order
    and company: every row the same bits."""
    load = embed.load_protein_model if model == "esm2" else embed.load_dna_model
    e = load("random:tiny", "cpu", "fp32")
    rng = np.random.default_rng(7)
    letters = "ACDEFGHIKLMNPQRSTVWY" if model == "esm2" else "ACGT"
    seqs = ["".join(rng.choice(list(letters), size=n)) for n in rng.integers(1, 400, size=60)]
    tokens = e.token_lists(seqs)
    e.batch_tokens = 1_000_000
    ref = e.embed_tokens(tokens)
    for budget in (1, 50, 700, 5000):
        e.batch_tokens = budget
        assert torch.equal(e.embed_tokens(tokens), ref), budget
    e.batch_tokens = 3000
    order = rng.permutation(len(seqs))
    mixed = e.embed_tokens([tokens[i] for i in order] + tokens[:7])
    assert torch.equal(mixed[: len(seqs)], ref[order])


def test_steps_and_classifier_calls_compute_whole_row_blocks():
    assert [row_count(n) for n in (0, 1, 1024, 1025, 5000)] == [1024, 1024, 1024, 2048, 5120]
    batch = [[5] * 7, [6] * 3]
    padded = filled(batch)
    assert padded[:2] == batch and sum(map(len, padded)) == ROW_BLOCK
    assert max(map(len, padded)) == 7  # the longest length, and with it attention's padding, kept
    assert sum(map(len, filled([[1] * 1500]))) == 2 * ROW_BLOCK
    seen = []
    x = torch.arange(12.0).reshape(6, 2)
    y = in_row_blocks(lambda t: seen.append(t.shape[0]) or t * 2, x)
    assert seen == [ROW_BLOCK] and torch.equal(y, x * 2)


@pytest.mark.parametrize("row_blocks", [True, False])
def test_the_reference_engine_keeps_the_original_batches(row_blocks):
    """Filler blocks are the default engine's; `--engine reference` embeds as the original did
    (one sequence per DNABERT-S step), so its speed, the suite's yardstick, is not inflated."""
    from virnucpro import pipeline

    opts = pipeline.Options(random_weights=True, preset="tiny", device="cpu", progress=False,
                            dna_batch_tokens=1, row_blocks=row_blocks)
    models = pipeline.load_models(opts)
    steps = []
    forward = models.dna.model.embed_packed
    models.dna.model.embed_packed = lambda t, c, m: steps.append(t.numel()) or forward(t, c, m)
    seqs = ["ACGTACGTAA", "ACGT"]
    models.dna.embed(seqs)
    one_each = sorted((len(t) for t in models.dna.token_lists(seqs)), reverse=True)  # longest first
    assert steps == ([ROW_BLOCK, ROW_BLOCK] if row_blocks else one_each)
