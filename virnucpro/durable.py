"""Writes that survive a kill or a full disk: a temp name, fsync, rename, and the folder
fsync'ed after; an OSError on the way is one OutputError line naming the path."""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager, suppress
from pathlib import Path

from virnucpro import faults
from virnucpro.errors import OutputError


@contextmanager
def writing(path):
    try:
        yield
    except OSError as e:
        raise OutputError(f"cannot write {e.filename or path}: {e.strerror or e}") from None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write, fault: str = "checkpoint") -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with writing(path):
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            faults.point(fault, tmp)
            os.replace(tmp, path)
        except BaseException:
            with suppress(OSError):
                tmp.unlink()
            raise
        fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
