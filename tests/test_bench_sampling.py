"""benchmarks/sampling.py: how many samples the suite takes and what they mean (CPU, tiny sizes)."""
import math

import pytest

from benchmarks import sampling


def test_busy_fraction_counts_overlapping_intervals_once():
    assert sampling.busy_fraction([(0, 2), (1, 3), (5, 6), (5.5, 5.7)], 10) == pytest.approx(0.4)
    assert sampling.busy_fraction([(4, 5), (0, 1)], 5) == pytest.approx(0.4)  # order does not matter
    assert sampling.busy_fraction([], 5) == 0.0
    assert math.isnan(sampling.busy_fraction([(0, 1)], 0))


def test_cpu_rates_take_the_method_s_samples_each_lasting_long_enough(monkeypatch):
    import torch

    monkeypatch.setitem(sampling.METHOD, "cpu_sample_seconds", 0.02)
    calls, threads = [], []

    def stage():
        calls.append(1)
        threads.append(torch.get_num_threads())

    rates = sampling.cpu_rates(stage, items=10)
    assert len(rates) == sampling.METHOD["samples"] == 5
    assert len(calls) > 5  # a sample repeats a fast stage until it has lasted cpu_sample_seconds
    assert set(threads[1:]) == {sampling.METHOD["cpu_threads"]}  # the warm-up call aside
    assert all(r > 0 for r in rates)


def test_asv_samples_are_what_asv_keeps_with_statistics():
    from asv_runner.statistics import compute_stats

    value = sampling.asv_samples([3, 1, 2])
    assert value == {"samples": [3.0, 1.0, 2.0], "number": 1}
    median, stats = compute_stats(value["samples"], value["number"])
    assert median == 2.0 and stats["repeat"] == 3


def test_gpu_stage_on_the_cpu_takes_the_samples_without_a_monitor():
    pytest.importorskip("tokenizers")
    from virnucpro import embed

    embedder = embed.load_protein_model("random:tiny", "cpu", "fp32")
    out = sampling.gpu_stage("esm2", embedder, ["MKV", "MSTNPKPQRKTKRNTNRRPQDVKFPGG"])
    assert len(out["items_per_second"]) == len(out["seconds"]) == sampling.METHOD["samples"]
    assert out["tokens_per_second"][0] == pytest.approx((5 + 29) / out["seconds"][0])
    assert "gpu_util_percent" not in out and "kernel_busy_percent" not in out  # nothing to read on a CPU


def test_a_metric_not_measured_says_why_in_the_skip():
    """setup_cache's stderr never reaches asv's log, so the reason rides on the skip's message."""
    from benchmarks import bench_stages

    cache = {("esm2", 1): {"kernel_busy_percent": math.nan,
                           "not_measured": {"kernel_busy_percent": "the profile recorded no CUDA kernel"}},
             ("dnabert", 1): {"kernel_busy_percent": math.nan}}
    with pytest.raises(NotImplementedError, match="esm2 on 1 GPU.*: the profile recorded no CUDA kernel"):
        bench_stages._get(cache, "esm2", 1, "kernel_busy_percent")
    with pytest.raises(NotImplementedError, match="not measured on this host$"):
        bench_stages._get(cache, "dnabert", 1, "kernel_busy_percent")


class _Event:
    """A profiler event as torch 2.13 gives it (with activity_type) or 2.11 (without)."""

    def __init__(self, name, device, activity=None, annotation=False):
        self._name, self._device, self._annotation = name, device, annotation
        if activity is not None:
            self.activity_type = lambda: activity

    def name(self):
        return self._name

    def device_type(self):
        return self._device

    def is_user_annotation(self):
        return self._annotation


@pytest.mark.parametrize("with_activity", [True, False])
def test_kernels_are_told_from_copies_fills_annotations_and_host_events(with_activity):
    import torch

    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU
    events = [("ampere_bf16_gemm", cuda, "kernel", False), ("Memcpy HtoD (Pageable -> Device)", cuda, "gpu_memcpy", False),
              ("Memset (Device)", cuda, "gpu_memset", False), ("esm2_layer", cuda, "gpu_user_annotation", True),
              ("aten::mm", cpu, "cpu_op", False), ("triton_add_norm", cuda, "kernel", False)]
    got = [sampling.is_kernel(_Event(n, d, a if with_activity else None, u)) for n, d, a, u in events]
    assert got == [True, False, False, False, False, True]
