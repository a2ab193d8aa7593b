"""The range store: one file per range of an input, ranges/<stem>/<a>-<b>.npz under OUT/.virnucpro/,
the scores (and, kept, the features) of ORFs a..b-1, written by whichever rank scored the range.

A range is a span of chunks, laid out from the input's chunk count (`ranges`), which is known once
the input is read: so a range can be scored as soon as its chunks are translated, before the rest
of the input is.  Its file is named by the span of ORFs those chunks hold, written to a temp name,
fsync'ed and renamed, so a kill leaves either the old file or the new one.  It carries the run's
fingerprint and a digest of its ORF ids and is used only if both match: a row can never be paired
with another ORF's id.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from virnucpro.durable import atomic_write, writing
from virnucpro.errors import VirnucproError

# Ranges come in a multiple of this, so 1, 2, 4 or 8 processes get equal shares; never
# split below MIN_RANGE chunks for that, since a range is at least one forward step per model.
BALANCE, MIN_RANGE = 8, 256


def ranges(n: int, every: int) -> list[tuple[int, int]]:
    """Contiguous ranges of n chunks, at most `every` each, equal in size.  They depend on the input and
    `every` alone, never on the number of processes: ranks take whole ranges, and a range is
    embedded in the same batches whoever computes it, so results are bit-identical whatever
    the world size, and after a resume."""
    if n == 0:
        return []
    base = -(-n // every)
    count = max(base, min(BALANCE * -(-base // BALANCE), -(-n // MIN_RANGE)))
    size = -(-n // count)
    return [(a, min(n, a + size)) for a in range(0, n, size)]


class RangeFiles:
    """The range files of a checkpoint folder (`root`), checked against its manifest's fingerprint;
    checkpoint.Store is one."""
    root: Path
    manifest: dict
    _ids: dict


    def spool_dir(self, stem: str, rank: int = 0) -> Path:
        """Where one rank keeps an input's chunks and ORFs while it is being scored."""
        return self.root / "spool" / f"{stem}.{rank}"

    def _dir(self, stem: str) -> Path:
        return self.root / "ranges" / stem

    def _path(self, stem: str, a: int, b: int) -> Path:
        return self._dir(stem) / f"{a}-{b}.npz"

    def _expect(self, data, a: int, b: int, orfs=None) -> dict:
        key = (data.stem, a, b)
        if key not in self._ids:
            orfs = data.orfs[a:b] if orfs is None else orfs
            self._ids[key] = hashlib.sha256("\n".join(o.id for o in orfs).encode()).hexdigest()
        return {"fingerprint": self.manifest["fingerprint"], "range": [a, b], "ids": self._ids[key]}

    def _read(self, data, a: int, b: int, keep_features: bool | None = None, orfs=None) -> dict | None:
        """The range's arrays if its file is whole and belongs to this run, else None; a damaged
        or foreign file is removed so that the range gets recomputed.  Every array is read in
        full, so zip's CRC catches a flipped byte anywhere in the file."""
        path = self._path(data.stem, a, b)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                ok = json.loads(str(z["meta"])) == self._expect(data, a, b, orfs)
                got = {k: z[k] for k in z.files if k != "meta"} if ok else {}
        except Exception:  # any failure to read means the file cannot be trusted
            ok = False
        if ok:
            shapes = {"logits": 2, "probs": 2, "features": None}
            ok = (set(got) - {"features"} == {"logits", "probs"}
                  and (keep_features is None or ("features" in got) >= keep_features)
                  and all(k in shapes and v.ndim == 2 and len(v) == b - a and shapes[k] in (None, v.shape[1])
                          and v.dtype == np.float32 and np.isfinite(v).all() for k, v in got.items()))
        if not ok:
            path.unlink(missing_ok=True)
            return None
        return got

    def save(self, data, a: int, b: int, pred, keep_features: bool, orfs=None) -> None:
        arrays = {"meta": np.array(json.dumps(self._expect(data, a, b, orfs))), "logits": pred.logits,
                  "probs": pred.probs}
        if keep_features:
            arrays["features"] = pred.features
        path = self._path(data.stem, a, b)
        with writing(path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, **arrays))

    def load(self, data, spans, dim: int, keep_features: bool) -> dict[str, np.ndarray]:
        """All ranges of one input, rows in ORF order."""
        cols = {"logits": [np.empty((0, 2), np.float32)], "probs": [np.empty((0, 2), np.float32)],
                "features": [np.empty((0, dim if keep_features else 0), np.float32)]}
        for a, b in spans:
            got = self._read(data, a, b, keep_features)
            if got is None:
                raise VirnucproError(f"checkpoint {self._path(data.stem, a, b)} is missing or damaged; run the "
                                     "same command with --resume to recompute it")
            for k in cols:
                if k != "features" or keep_features:
                    cols[k].append(got[k])
        return {k: np.concatenate(v) for k, v in cols.items()}
