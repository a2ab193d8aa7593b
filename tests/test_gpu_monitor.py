import json
import math
import time

import pytest

from virnucpro.utils.gpu_monitor import GPUMonitorUnavailable, NvitopMonitor, parse_visible_ordinals

GiB = 1 << 30


class FakeGPUs:
    """Utilisation and memory per NVML index, changeable between samples."""

    def __init__(self, util: dict, mem: dict | None = None):
        self.util, self.mem = dict(util), dict(mem or {})
        self.asked: list = []

    def __call__(self, index):
        self.asked.append(index)
        return self.util[index], self.mem.get(index, 0)


def started(monitor: NvitopMonitor) -> NvitopMonitor:
    """Start with an interval long enough that only the thread's first tick runs on its own."""
    monitor.start()
    deadline = time.monotonic() + 5
    while monitor.summary()["samples"] < 1:
        assert time.monotonic() < deadline, "sampling thread never ticked"
        time.sleep(0.005)
    return monitor


@pytest.mark.parametrize("value, expected", [
    ("3,5", [3, 5]),
    (" 2 , 0", [2, 0]),
    ("0,2,-1,1", [0, 2]),  # CUDA ignores everything after an invalid entry
    ("1,x,2", [1]),
    ("", []),
    ("0,0", []),
    ("GPU-5a6b7c", None),
    ("MIG-GPU-3eb79704/13/0", None),
])
def test_parse_visible_ordinals(value, expected):
    assert parse_visible_ordinals(value) == expected


def test_visible_devices_map_to_their_physical_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    fake = FakeGPUs({0: 1.0, 3: 30.0, 5: 50.0})
    mon = started(NvitopMonitor(devices=[1], interval=3600, sampler=fake))
    mon.sample()
    mon.stop()
    assert set(fake.asked) == {5}
    assert mon.get_average_utilization() == 50.0
    assert mon.summary()["devices"][0]["physical_index"] == 5


def test_default_devices_are_all_visible_ones(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,2")
    fake = FakeGPUs({2: 20.0, 6: 60.0}, {2: 1 * GiB, 6: 3 * GiB})
    mon = started(NvitopMonitor(interval=3600, sampler=fake))
    mon.stop()
    assert mon.get_average_utilization(device=0) == 60.0
    assert mon.get_average_utilization(device=1) == 20.0
    assert mon.get_average_utilization() == 40.0
    assert mon.get_peak_memory(device=1) == 1 * GiB
    assert mon.get_peak_memory() == 3 * GiB
    with pytest.raises(ValueError, match="not monitored"):
        mon.get_average_utilization(device=2)


def test_device_outside_cuda_visible_devices_is_rejected(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with pytest.raises(ValueError, match="not visible"):
        NvitopMonitor(devices=[1], sampler=FakeGPUs({})).start()


def test_uuids_without_nvml_are_unavailable(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5a6b7c8d")
    with pytest.raises(GPUMonitorUnavailable):
        NvitopMonitor(sampler=FakeGPUs({})).start()


def test_averages_are_kept_per_stage(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    fake = FakeGPUs({0: 0.0, 1: 0.0})
    mon = started(NvitopMonitor(interval=3600, sampler=fake))
    mon.set_stage("dnabert")
    fake.util = {0: 90.0, 1: 70.0}
    fake.mem = {0: 2 * GiB, 1: 5 * GiB}
    mon.sample()
    fake.util = {0: 100.0, 1: 80.0}
    mon.sample()
    mon.set_stage("esm2")
    fake.util = {0: 40.0, 1: 20.0}
    fake.mem = {0: 1 * GiB, 1: 1 * GiB}
    mon.sample()
    mon.stop()

    assert mon.get_average_utilization(stage="dnabert") == pytest.approx(85.0)
    assert mon.get_average_utilization(device=1, stage="dnabert") == pytest.approx(75.0)
    assert mon.get_average_utilization(stage="esm2") == pytest.approx(30.0)
    assert mon.get_peak_memory(stage="esm2") == 1 * GiB
    assert mon.get_peak_memory(device=1) == 5 * GiB
    # the untagged first tick (0 %) counts towards the all-samples mean
    assert mon.get_average_utilization(device=0) == pytest.approx((0 + 90 + 100 + 40) / 4)
    summary = mon.summary()
    assert summary["stages"]["dnabert"]["samples"] == 2
    assert summary["stages"]["dnabert"]["per_device_util_percent"] == {"0": 95.0, "1": 75.0}
    assert summary["devices"][0]["max_util_percent"] == 100.0


def test_nothing_sampled_gives_nan(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    mon = started(NvitopMonitor(interval=3600, sampler=FakeGPUs({0: 50.0})))
    mon.stop()
    assert math.isnan(mon.get_average_utilization(stage="never-set"))
    assert math.isnan(mon.get_peak_memory(stage="never-set"))
    assert math.isnan(NvitopMonitor(sampler=FakeGPUs({})).get_average_utilization())


def test_unavailable_readings_are_skipped_not_averaged_as_zero(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")

    def sampler(index):
        if index == 1:
            raise RuntimeError("GPU has fallen off the bus")
        return 60.0, float("nan")

    mon = started(NvitopMonitor(interval=3600, sampler=sampler))
    mon.stop()
    assert mon.get_average_utilization() == 60.0
    assert math.isnan(mon.get_peak_memory())
    assert mon.summary()["sample_errors"] == 1


def test_thread_samples_until_stopped(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    mon = NvitopMonitor(interval=0.01, sampler=FakeGPUs({0: 10.0}))
    with mon:
        assert mon.running
        with pytest.raises(RuntimeError, match="already"):
            mon.start()
        time.sleep(0.2)
    assert not mon.running
    taken = mon.summary()["samples"]
    assert taken >= 3
    time.sleep(0.05)
    assert mon.summary()["samples"] == taken
    assert mon.summary()["duration_s"] >= 0.2


def test_json_export_is_strict_json(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4")
    mon = started(NvitopMonitor(interval=3600, sampler=FakeGPUs({4: 75.0}, {4: 3 * GiB})))
    mon.set_stage("esm2")
    mon.sample()
    mon.set_stage("empty")
    mon.stop()
    path = tmp_path / "gpu.json"
    mon.to_json(path)
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["devices"] == [{"device": 0, "physical_index": 4, "samples": 2, "mean_util_percent": 75.0,
                                "max_util_percent": 75.0, "peak_memory_bytes": 3 * GiB}]
    assert data["stages"]["esm2"]["mean_util_percent"] == 75.0
    assert "empty" not in data["stages"]


def test_json_writes_null_for_values_never_sampled(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    mon = started(NvitopMonitor(interval=3600, sampler=lambda i: (float("nan"), float("nan"))))
    mon.stop()
    mon.to_json(tmp_path / "gpu.json")
    device = json.loads((tmp_path / "gpu.json").read_text())["devices"][0]
    assert device["mean_util_percent"] is None and device["peak_memory_bytes"] is None


def test_default_path_asks_nvitop_for_the_mapping_and_reads_na_as_nan(monkeypatch):
    nvitop = pytest.importorskip("nvitop")
    sampled = []

    class FakeDevice:  # stands in for NVML: CUDA sees physical GPUs 5 and 3, in that order
        @staticmethod
        def count():
            return 8

        @staticmethod
        def parse_cuda_visible_devices():
            return [5, 3]

        def __init__(self, index):
            self.index = index

        def gpu_utilization(self):
            sampled.append(self.index)
            return nvitop.NA if self.index == 3 else 64

        def memory_used(self):
            return 2 * GiB

    monkeypatch.setattr(nvitop, "Device", FakeDevice)
    mon = started(NvitopMonitor(interval=3600))
    mon.stop()
    assert sorted(sampled) == [3, 5]
    assert mon.get_average_utilization(device=0) == 64.0
    assert math.isnan(mon.get_average_utilization(device=1))
    assert mon.get_peak_memory(device=1) == 2 * GiB
    assert [d["physical_index"] for d in mon.summary()["devices"]] == [5, 3]


def test_start_without_driver_raises_unavailable():
    try:
        from nvitop import Device, libnvml
        Device.count()
    except ImportError:
        pass
    except libnvml.NVMLError:
        pass
    else:
        pytest.skip("an NVIDIA driver is present")
    mon = NvitopMonitor()
    with pytest.raises(GPUMonitorUnavailable, match="NVML|nvitop"):
        mon.start()
    assert not mon.running
