"""Background sampling of GPU utilisation and memory for the GPUs this process uses.

NVML numbers GPUs physically; CUDA numbers only those CUDA_VISIBLE_DEVICES lets the process
see. Sampling NVML index i for CUDA device i is right only when nothing is masked, so every
`device` here is a CUDA ordinal of this process, translated to its NVML index before sampling.
nvitop is imported lazily: importing this module never needs a driver, only start() does.
"""
from __future__ import annotations

import json
import math
import threading
import time
from typing import Callable, Iterable

from virnucpro import settings

# (NVML index) -> (utilisation %, memory used in bytes); an MIG device's index is a (gpu, mig) pair.
Sampler = Callable[[object], "tuple[float, float]"]


class GPUMonitorUnavailable(RuntimeError):
    """NVML cannot be used here (no NVIDIA driver, nvitop missing) or no GPU is visible."""


def parse_visible_ordinals(value: str) -> list[int] | None:
    """Integer CUDA_VISIBLE_DEVICES read as CUDA does, up to its first invalid entry.

    Returns None when it names GPUs by UUID or MIG id: only NVML can turn those into indices.
    """
    found: list[int] = []
    for token in (t.strip() for t in value.split(",")):
        if token.startswith(("GPU-", "MIG-")) and not found:
            return None
        if not token.isdigit():
            break
        if int(token) in found:
            return []  # CUDA rejects the whole list (nvitop agrees)
        found.append(int(token))
    return found


def _nvml_visible() -> list:
    """NVML indices of the GPUs CUDA shows this process, in CUDA ordinal order."""
    try:
        from nvitop import Device, libnvml
    except ImportError as exc:
        raise GPUMonitorUnavailable("nvitop is not installed (pip install nvitop)") from exc
    try:
        count = Device.count()
    except libnvml.NVMLError as exc:
        raise GPUMonitorUnavailable(f"NVML is not available ({exc}); is an NVIDIA driver installed?") from exc
    if count == 0:
        raise GPUMonitorUnavailable("NVML reports no GPU")
    # nvitop asks libcuda which GPUs CUDA enumerates, so UUIDs, MIG ids and CUDA's
    # fastest-first ordering (which can differ from NVML's PCI order) all resolve correctly.
    visible = Device.parse_cuda_visible_devices()
    if not visible:
        raise GPUMonitorUnavailable(f"CUDA_VISIBLE_DEVICES={settings.visible_devices()!r} selects no GPU")
    return list(visible)


def _number(value) -> float:
    # nvitop answers NA (a str) when the GPU cannot report a value, e.g. utilisation of MIG slices.
    return float(value) if isinstance(value, (int, float)) else math.nan


class _NvitopSampler:
    def __init__(self):
        self._devices: dict = {}

    def __call__(self, index) -> tuple[float, float]:
        from nvitop import Device

        if index not in self._devices:
            self._devices[index] = Device(index=index)
        device = self._devices[index]
        return _number(device.gpu_utilization()), _number(device.memory_used())


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _max(values: Iterable[float]) -> float:
    return max((v for v in values if math.isfinite(v)), default=math.nan)


class NvitopMonitor:
    """Samples every `interval` seconds; queries answer NaN where nothing was sampled."""

    def __init__(self, devices: Iterable[int] | None = None, interval: float = 0.2, sampler: Sampler | None = None):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.devices = None if devices is None else [int(d) for d in devices]
        self.interval = float(interval)
        self._sampler = sampler
        self._ordinals: list[int] = []
        self._physical: list = []
        self._samples: list[tuple[str | None, tuple]] = []  # (stage, ((util, mem) per device))
        self._errors = 0
        self._stage: str | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._active: Sampler | None = None
        self._started = self._stopped = None

    def _resolve(self) -> tuple[list[int], list]:
        env = settings.visible_devices()
        if self._sampler is None:
            visible = _nvml_visible()
        elif env is None:
            if self.devices is None:
                raise ValueError("a custom sampler without CUDA_VISIBLE_DEVICES needs explicit devices=")
            visible = list(range(max(self.devices, default=-1) + 1))
        else:
            visible = parse_visible_ordinals(env)
            if visible is None:
                raise GPUMonitorUnavailable("GPU UUIDs in CUDA_VISIBLE_DEVICES need NVML to resolve")
        ordinals = list(range(len(visible))) if self.devices is None else self.devices
        outside = [d for d in ordinals if not 0 <= d < len(visible)]
        if outside:
            raise ValueError(f"CUDA device(s) {outside} not visible: CUDA_VISIBLE_DEVICES={env!r} shows {len(visible)}")
        if not ordinals:
            raise GPUMonitorUnavailable(f"no GPU to monitor (CUDA_VISIBLE_DEVICES={env!r})")
        return ordinals, [visible[d] for d in ordinals]

    def start(self) -> "NvitopMonitor":
        if self._thread is not None:
            raise RuntimeError("monitor already running")
        self._ordinals, self._physical = self._resolve()
        self._active = self._sampler or _NvitopSampler()
        with self._lock:
            self._samples, self._errors = [], 0
        self._stopping.clear()
        self._started, self._stopped = time.monotonic(), None
        self._thread = threading.Thread(target=self._run, name="gpu-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        self._stopped = time.monotonic()

    def __enter__(self) -> "NvitopMonitor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def set_stage(self, name: str | None) -> None:
        with self._lock:
            self._stage = name

    def _read(self, index) -> tuple[float, float]:
        try:
            util, mem = self._active(index)
            return float(util), float(mem)
        except Exception:  # noqa: BLE001 - one GPU failing to answer must not end sampling of the others
            with self._lock:
                self._errors += 1
            return math.nan, math.nan

    def sample(self) -> None:
        """Take one sample now, tagged with the current stage (the thread's tick, callable directly)."""
        if self._active is None:
            raise RuntimeError("start() the monitor before sampling")
        readings = tuple(self._read(p) for p in self._physical)
        with self._lock:
            self._samples.append((self._stage, readings))

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stopping.wait(self.interval):
                return

    def _column(self, column: int, device: int | None, stage: str | None) -> list[float]:
        if device is None:
            positions = range(len(self._ordinals))
        elif device in self._ordinals:
            positions = [self._ordinals.index(device)]
        else:
            raise ValueError(f"CUDA device {device} is not monitored (monitored: {self._ordinals})")
        with self._lock:
            return [r[p][column] for s, r in self._samples if stage is None or s == stage for p in positions]

    def get_average_utilization(self, device: int | None = None, stage: str | None = None) -> float:
        """Mean utilisation (%) over the samples of `device` (all monitored GPUs if None) in `stage`."""
        return _mean(self._column(0, device, stage))

    def get_peak_memory(self, device: int | None = None, stage: str | None = None) -> float:
        """Largest memory use sampled (bytes); NaN if none was."""
        return _max(self._column(1, device, stage))

    def summary(self) -> dict:
        with self._lock:
            stages = list(dict.fromkeys(s for s, _ in self._samples if s is not None))
            ticks = len(self._samples)
            per_stage_ticks = {s: sum(1 for t, _ in self._samples if t == s) for s in stages}
            errors = self._errors
        end = self._stopped if self._stopped is not None else time.monotonic()
        devices = []
        for ordinal, physical in zip(self._ordinals, self._physical):
            util = self._column(0, ordinal, None)
            devices.append({
                "device": ordinal,
                "physical_index": physical,
                "samples": sum(1 for u in util if math.isfinite(u)),
                "mean_util_percent": _mean(util),
                "max_util_percent": _max(util),
                "peak_memory_bytes": self.get_peak_memory(ordinal),
            })
        return {
            "interval_s": self.interval,
            "duration_s": end - self._started if self._started is not None else 0.0,
            "samples": ticks,
            "sample_errors": errors,
            "devices": devices,
            "stages": {s: {
                "samples": per_stage_ticks[s],
                "mean_util_percent": self.get_average_utilization(stage=s),
                "peak_memory_bytes": self.get_peak_memory(stage=s),
                "per_device_util_percent": {str(d): self.get_average_utilization(d, s) for d in self._ordinals},
            } for s in stages},
        }

    def to_json(self, path) -> None:
        """The summary as strict JSON: values never sampled become null."""
        with open(path, "w") as f:
            json.dump(_strict(self.summary()), f, indent=2, allow_nan=False)


def _strict(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value
