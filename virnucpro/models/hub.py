"""Where downloaded weights live (the Hugging Face cache, shared by both embedders' loaders), and
how their files are read: every problem with a model file becomes one `ModelLoadError` line that
names the file, and nothing is allocated for a model before its config and its weights agree and
it fits in the memory of its device."""
from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

from virnucpro.errors import ModelLoadError
from virnucpro.settings import hf_cache_roots  # noqa: F401  (where the caches are: a setting)


def hf_snapshots(repo_dir: Path, usable: Callable[[Path], bool]) -> list[Path]:
    """Usable snapshots of one cached repo: the one `refs/main` points at first, then the newest."""
    if not (repo_dir / "snapshots").is_dir():
        return []
    snaps = sorted((repo_dir / "snapshots").glob("*/"), key=lambda p: p.stat().st_mtime, reverse=True)
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        main = repo_dir / "snapshots" / ref.read_text().strip()
        snaps = [main] + [s for s in snaps if s != main]
    return [s for s in snaps if usable(s)]


# ----------------------------------------------------------------------------- reading files

def first_line(e: BaseException) -> str:
    """An exception's first line, or its type where it has no message."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def read_json_object(path: Path, what: str) -> dict:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: cannot read the {what} ({first_line(e)})") from None
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ModelLoadError(f"{path}: the {what} is not valid JSON ({first_line(e)})") from None
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{path}: the {what} must be a JSON object, found a JSON {type(obj).__name__}")
    return obj


def config_int(conf: dict, key: str, where: Path, default: int | None = None) -> int:
    """A positive whole number from a model config (JSON `1e9` is a float, `true` a bool: neither is a size)."""
    value = conf.get(key, default)
    if value is None:
        raise ModelLoadError(f"{where}: '{key}' is missing")
    if type(value) is not int or value < 1:
        raise ModelLoadError(f"{where}: '{key}' must be a positive whole number, found {json.dumps(value)}")
    return value


def _torch():
    import torch

    return torch


def check_fits(n_bytes: int, device, where, what: str) -> None:
    """Refuse a model whose weights alone exceed the memory its device has free."""
    device = _torch().device(device)
    if device.type == "cuda":
        cuda = _torch().cuda
        free, _ = cuda.mem_get_info(device)
        # Blocks this process's allocator holds but no tensor uses (a model dropped before a reload) are free too.
        free += cuda.memory_reserved(device) - cuda.memory_allocated(device)
        room = f"{free / 1e9:.1f} GB free on {device}"
    elif device.type == "cpu":
        free = host_memory_available()
        room = f"{free / 1e9:.1f} GB of host memory available" if free is not None else ""
    else:
        free = None
    if free is not None and n_bytes > free:
        raise ModelLoadError(f"{where}: describes a {what} whose weights take {n_bytes / 1e9:.3g} GB, "
                             f"more than the {room}")


def host_memory_available() -> int | None:
    """MemAvailable plus free swap (Linux), else what sysconf says is free; None where unknown."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return (int(info["MemAvailable"].split()[0]) + int(info.get("SwapFree", "0 kB").split()[0])) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def torch_load(path: Path, allowed: list, what: str):
    """torch.load with weights_only and an allow-list of classes; a zip checkpoint is memory-mapped.

    A pickle that asks for anything else is refused before it is read, with our own message:
    torch's advice (re-run with weights_only=False) is the one thing a user must not do."""
    torch = _torch()
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read the {what} ({first_line(e)})") from None
    if size == 0:
        raise ModelLoadError(f"{path}: the {what} file is empty")
    is_zip = zipfile.is_zipfile(path)
    if not is_zip and head[:1] != b"\x80":  # a pickle of protocol 2 or later, as torch.save's legacy format
        raise ModelLoadError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle; "
                             f"it begins with {head!r})")
    names = {c[1] if isinstance(c, tuple) else f"{c.__module__}.{c.__qualname__}" for c in allowed}
    if is_zip:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as e:
            raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({_plain(e)})") from None
        _refuse(path, [g for g in unsafe if g not in names], what)
    try:
        # torch warns about unusual pickle protocols on stderr: the user gets one line, ours, or none.
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as e:  # UnpicklingError, RuntimeError or a zip error, depending on the damage
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            _refuse(path, [found.group(1)], what)
        raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({_plain(e)})") from None


def _refuse(path: Path, unsafe: list[str], what: str) -> None:
    if unsafe:
        raise ModelLoadError(f"{path}: refusing to load: its pickle asks for {', '.join(map(repr, unsafe))}, "
                             f"which a {what} does not hold and which could run code")


def _plain(e: BaseException) -> str:
    """An exception's first line, unless it is torch's weights_only advice, which says nothing about the file."""
    text = str(e)
    if "weights_only" in text:
        detail = [ln.strip() for ln in text.partition("WeightsUnpickler error:")[2].splitlines() if ln.strip()]
        return "its pickle cannot be read as weights" + (f": {detail[0]}" if detail else "")
    return first_line(e)


# ----------------------------------------------------------------------------- weights

class SafetensorsState(Mapping):
    """Tensors of one or more .safetensors files, read only when asked for (host memory stays
    at one tensor, not the whole model); shapes come from the headers alone."""

    def __init__(self, files: list[Path]):
        from safetensors import safe_open

        self._handles, self._where = [], {}
        for f in files:
            try:
                if f.stat().st_size == 0:
                    raise ValueError("the file is empty")
                h = safe_open(str(f), framework="pt", device="cpu")
            except Exception as e:
                raise ModelLoadError(f"{f}: not a readable safetensors file ({first_line(e)})") from None
            self._handles.append(h)
            self._where.update((k, (h, f)) for k in h.keys())

    def shape(self, key) -> list[int]:
        return self._where[key][0].get_slice(key).get_shape()

    def __getitem__(self, key):
        return self._where[key][0].get_tensor(key)

    def __iter__(self):
        return iter(self._where)

    def __len__(self):
        return len(self._where)


def hf_weight_files(folder: Path) -> tuple[str, list[Path]] | None:
    for single, kind in (("model.safetensors", "safetensors"), ("pytorch_model.bin", "bin")):
        if (folder / single).is_file():
            return kind, [folder / single]
        index = folder / f"{single}.index.json"
        if index.is_file():
            return kind, _shards(index)
    return None


def _shards(index: Path) -> list[Path]:
    """The shard files a sharded checkpoint's index names, each a file beside the index."""
    weight_map = read_json_object(index, "checkpoint index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelLoadError(f"{index}: 'weight_map' must be a JSON object from tensor names to shard file names")
    shards = []
    for name in sorted(set(weight_map.values())):
        shard = index.parent / name
        if Path(name).name != name or not shard.is_file():
            raise ModelLoadError(f"{index}: names shard {name!r}, which is not a file beside it")
        shards.append(shard)
    return shards


STAGE_BYTES, STAGE_BUFFERS = 32 << 20, 4


def staged_copy(pairs, device, stage_bytes: int | None = None) -> None:
    """Copy each (dst, src) pair, src a host tensor (memory-mapped from a checkpoint) and dst a
    tensor of the same shape on `device`, in any dtype.

    On a GPU the bytes go through a few pinned buffers, filled by the host while the GPU copies the
    previous one, and each tensor is converted on the GPU: a direct `dst.copy_(src)` from pageable
    memory would first convert on the host (a second full pass over 5.6 GB for ESM-2 3B) and then
    copy without overlap.  On the CPU each pair is copied in place."""
    torch = _torch()
    if device.type != "cuda" and stage_bytes is None:
        for dst, src in pairs:
            dst.copy_(src)
        return
    stage_bytes = stage_bytes or STAGE_BYTES
    cuda = device.type == "cuda"
    host = [torch.empty(stage_bytes, dtype=torch.uint8, pin_memory=cuda) for _ in range(STAGE_BUFFERS)]
    dev = [torch.empty(stage_bytes, dtype=torch.uint8, device=device) for _ in host] if cuda else host
    stream = torch.cuda.Stream(device) if cuda else None
    done: list = [None] * len(host)
    state = {"buf": 0, "fill": 0, "pieces": []}

    def flush():
        i, fill, pieces = state["buf"], state["fill"], state["pieces"]
        if pieces:
            if cuda:
                with torch.cuda.stream(stream):
                    dev[i][:fill].copy_(host[i][:fill], non_blocking=True)
                    for dst, a, n, dtype, off in pieces:
                        dst[a:a + n].copy_(dev[i][off:off + n * dtype.itemsize].view(dtype))
                    done[i] = torch.cuda.Event()
                    done[i].record(stream)
            else:
                for dst, a, n, dtype, off in pieces:
                    dst[a:a + n].copy_(host[i][off:off + n * dtype.itemsize].view(dtype))
        i = (i + 1) % len(host)
        if done[i] is not None:
            done[i].synchronize()  # the GPU has read this buffer: the host may fill it again
        state.update(buf=i, fill=0, pieces=[])

    for dst, src in pairs:
        flat, out = src.contiguous().view(-1), dst.view(-1)
        size, a = flat.element_size(), 0
        while a < flat.numel():
            fill = -(-state["fill"] // 64) * 64  # every piece starts aligned for any dtype's view
            n = min((stage_bytes - fill) // size, flat.numel() - a)
            if n <= 0:
                flush()
                continue
            host[state["buf"]][fill:fill + n * size].copy_(flat[a:a + n].view(torch.uint8))
            state["pieces"].append((out, a, n, flat.dtype, fill))
            state["fill"], a = fill + n * size, a + n
    flush()
    if cuda:
        stream.synchronize()
