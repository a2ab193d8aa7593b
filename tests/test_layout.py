"""The same bytes whatever the batch layout (docs/RELIABILITY.md): a row's results depend on its own
sequence only, not on the range, the token budget, the company of other inputs, the number of
threads or processes, or a resume.  CI runs this file under each of torch's CPU dispatch paths
(ATEN_CPU_CAPABILITY=default, avx2, avx512)."""
import numpy as np
import pytest
import torch

from conftest import DATA
from layer_diff import first_moved
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
    "batch-tokens 1": ["--batch-tokens", "1"],
}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("default") / "out"
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", *TINY, "--keep-intermediate", "-o", str(out)]) == 0
    return out / "KK037166"


def assert_same_results(got, want):
    """features.npy first, as it names the ORF rows and the model (columns) that moved."""
    features = np.load(got / "intermediate" / "features.npy")
    ref = np.load(want / "intermediate" / "features.npy")
    moved = np.flatnonzero((features != ref).any(axis=1))
    assert moved.size == 0, (f"{moved.size} ORF rows differ, first {moved[:5]}; columns "
                             f"{np.flatnonzero((features != ref).any(axis=0))[[0, -1]]} (DNABERT-S first)")
    for name in FILES:
        assert (got / name).read_bytes() == (want / name).read_bytes(), name


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_results_are_byte_identical_whatever_the_layout(tmp_path, default_run, layout):
    out = tmp_path / "out"
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", *TINY, "--keep-intermediate",
                 "-o", str(out), *LAYOUTS[layout]]) == 0
    assert_same_results(out / "KK037166", default_run)


def test_an_input_s_results_do_not_depend_on_the_inputs_beside_it(tmp_path, default_run):
    """After two other inputs, whose ORFs share its steps and ranges, at an odd budget."""
    out = tmp_path / "out"
    inputs = [str(DATA / n) for n in ("edge_cases.fa", "SRR492066.fna", "KK037166.fna")]
    assert main(["predict", *inputs, "-l", "500", *TINY, "--keep-intermediate", "-o", str(out),
                 "--batch-tokens", "777", "--checkpoint-every", "40"]) == 0
    assert_same_results(out / "KK037166", default_run)


@pytest.mark.parametrize("threads", ["1", "3", "8"])
def test_results_do_not_depend_on_the_threads_asked_for(tmp_path, default_run, monkeypatch, threads):
    """OMP_NUM_THREADS caps the cores a run takes; virnucpro rounds down to a power of two."""
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    before = torch.get_num_threads()
    try:
        out = tmp_path / "out"
        assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", *TINY, "--keep-intermediate",
                     "-o", str(out)]) == 0
    finally:
        torch.set_num_threads(before)
    assert_same_results(out / "KK037166", default_run)


def assert_same_rows(e, tokens, got, ref, budget, ref_budget=1_000_000):
    moved = [i for i in range(len(tokens)) if not torch.equal(got[i], ref[i])]
    if moved:
        i = moved[0]
        where = first_moved(e.model, tokens, i, budget, ref_budget)
        raise AssertionError(f"budget {budget}: {len(moved)} rows differ from budget {ref_budget}; the first, "
                             f"sequence {i} ({len(tokens[i])} tokens), moved first at the {where}")


@pytest.mark.parametrize("threads", [1, 2, 4, 8])
@pytest.mark.parametrize("model", ["esm2", "dnabert"])
def test_a_sequence_s_embedding_does_not_depend_on_its_batch(model, threads):
    """Budgets from one sequence per step to all in one, the same sequences in another order and
    company, at each power-of-two thread count: every row the same bits as at 2 threads."""
    load = embed.load_protein_model if model == "esm2" else embed.load_dna_model
    e = load("random:tiny", "cpu", "fp32")
    rng = np.random.default_rng(7)
    letters = "ACDEFGHIKLMNPQRSTVWY" if model == "esm2" else "ACGT"
    seqs = ["".join(rng.choice(list(letters), size=n)) for n in rng.integers(1, 400, size=60)]
    tokens = e.token_lists(seqs)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        e.batch_tokens = 1_000_000
        ref = e.embed_tokens(tokens)
        torch.set_num_threads(threads)
        for budget in (1, 50, 700, 5000, 1_000_000):
            e.batch_tokens = budget
            assert_same_rows(e, tokens, e.embed_tokens(tokens), ref, budget)
        e.batch_tokens = 3000
        order = rng.permutation(len(seqs))
        mixed = e.embed_tokens([tokens[i] for i in order] + tokens[:7])
        assert torch.equal(mixed[: len(seqs)], ref[order])
    finally:
        torch.set_num_threads(before)


def test_a_moved_row_is_traced_to_the_module_that_moved_it(monkeypatch):
    """The diagnosis the invariance tests print: an attention that lets a sequence's company into its
    bits (a deliberately batch-dependent one) is found at the input of the projection after it."""
    from virnucpro.models import attention

    e = embed.load_dna_model("random:tiny", "cpu", "fp32")
    tokens = e.token_lists(["ACGTTGCA" * 9, "TTGACC" * 12, "GATTACA" * 10])
    per_sequence = attention.per_sequence

    def crowded(q, k, v, groups, bias=None):  # adds a trace of the step's size to every value
        return per_sequence(q, k, v, groups, bias) + 1e-3 * len(groups() if callable(groups) else groups)

    monkeypatch.setattr(attention, "per_sequence", crowded)
    assert first_moved(e.model, tokens, 0, 1, 1_000_000).startswith("input of layers.0.attn_out")
    monkeypatch.undo()
    assert first_moved(e.model, tokens, 0, 1, 1_000_000).startswith("the pooling")


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


def test_the_host_report_hashes_the_files_a_run_writes(tmp_path, default_run):
    """scripts/host_bits.py, the cross-host report: its SHA-256 of KK037166's files are those of this
    module's in-process run (another process, the same bytes), and it names the recorded hosts whose
    bytes it matches, whatever they are (it is a report: other bytes on another CPU are no failure)."""
    import hashlib
    import json
    import subprocess
    import sys

    from conftest import ROOT

    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "host_bits.py"), "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    got = report["sha256"]["KK037166 -l 500"]
    assert got == {f: hashlib.sha256((default_run / f).read_bytes()).hexdigest() for f in got}
    assert set(report["sha256"]["edge_cases -l 300"]) == set(got)
    assert report["decided_by"]["aten_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report["decided_by"]["MKL_CBWR"]  # as virnucpro runs: it sets strict CNR
    recorded = json.loads((ROOT / "docs" / "perf" / "host_bits.json").read_text())
    assert report["same_bytes_as"] == [r["name"] for r in recorded if r["sha256"] == report["sha256"]]
    assert "same bytes as:" in p.stdout and got["intermediate/features.npy"] in p.stdout


@pytest.mark.parametrize("with_bias", [False, True])
def test_cpu_attention_gives_a_sequence_the_same_bits_in_any_company(with_bias):
    """The mechanism itself, on the case that broke on an AMD EPYC host: q, k, v as strided views of
    one projection's output (as DNABERT-S's Wqkv gives them), a sequence of 11 tokens alone against
    the same sequence among 1 to 299 others of its length, with and without an ALiBi-like bias."""
    from virnucpro.models import attention

    torch.manual_seed(3)
    H, Dh, n = 12, 8, 11
    bias = (lambda L: -0.25 * torch.arange(L).float().sub(torch.arange(L)[:, None]).abs().expand(H, L, L)) \
        if with_bias else None
    qkv = torch.randn(300 * n, 3, H, Dh)
    q, k, v = qkv.unbind(1)
    alone = None
    for count in (1, 2, 5, 93, 300):
        cu = torch.arange(count + 1, dtype=torch.int32) * n
        out = attention.per_sequence(q[: count * n], k[: count * n], v[: count * n],
                                     attention.length_groups(cu), bias)
        alone = out[:n] if alone is None else alone
        assert torch.equal(out[:n], alone), count
