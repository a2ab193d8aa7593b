"""Checkpoints of `predict`, so that a killed run resumes where it stopped.

OUT/.virnucpro/ holds `lock` (flock'ed by the run in progress), `manifest.json` (the
fingerprint of inputs and result-changing options, the range layout, which inputs are
finished and which ranges are done) and ranges/<stem>/<a>-<b>.npz: the scores of ORFs
a..b-1 of one input, the range store (range_store.py).  Every file is written to a temp name,
fsync'ed and renamed, so a kill leaves either the old file or the new one.  Chunking and
translation are cheap and deterministic, so they are recomputed on resume rather than saved;
spool/ holds them (spool.py) while an input is scored, and is removed at the start of every run.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

from virnucpro import owned
from virnucpro.durable import atomic_write, writing
from virnucpro.errors import InputError
from virnucpro.range_store import BALANCE, MIN_RANGE, RangeFiles, ranges  # noqa: F401

DIR = ".virnucpro"
FORMAT = 3  # 3: ranges are spans of chunks (2: of ORFs)


def digest(fields) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def explain_mismatch(old: dict, new: dict) -> str:
    parts = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "inputs" and a and b and [x["name"] for x in a] == [x["name"] for x in b]:
            changed = [x["name"] for x, y in zip(a, b) if x != y]
            parts.append(f"the content of {', '.join(changed)} changed")
        elif key == "inputs":
            parts.append(f"inputs were {[x['name'] for x in a or []]}, now {[x['name'] for x in b or []]}")
        else:
            parts.append(f"{key} was {a!r}, now {b!r}")
    return "; ".join(parts)


class Store(RangeFiles):
    """OUT/.virnucpro/: the session (lock, manifest) and the range files (range_store.py)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.root = self.out / DIR
        self.manifest_path = self.root / "manifest.json"
        self.manifest: dict = {}
        self._lock_fd = None
        self._ids: dict[tuple[str, int, int], str] = {}  # a range's ORF-id digest: read from the spool once

    # --- session: held by the main process for the whole run ---

    @contextmanager
    def session(self, fields: dict, layout: dict, resume: bool):
        """Lock OUT, then continue the run recorded there (resume) or start a new record.
        A failure before anything worth keeping was made removes what this call created:
        OUT/.virnucpro/ and the folders made for OUT, if they are empty then."""
        made = [p for p in (self.out, *self.out.parents) if not p.exists()]
        root_made = not self.root.exists()
        try:
            self._lock()
            self._begin(fields, layout, resume)
            yield self
        except BaseException:
            if root_made and self._lock_fd is not None and self._worthless(fields):
                shutil.rmtree(self.root, ignore_errors=True)
                for p in made:  # innermost first; rmdir leaves anything a user put there meanwhile
                    with suppress(OSError):
                        p.rmdir()
            raise
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _lock(self) -> None:
        with writing(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(f"{self.out}: another virnucpro run (pid {holder}) is writing into this folder; "
                             "wait for it to end or choose another --out") from None
        self._lock_fd = fd
        with writing(self.root / "lock"):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def _begin(self, fields: dict, layout: dict, resume: bool) -> None:
        fp = digest(fields)
        stems = [x["name"] for x in fields["inputs"]]
        if resume and self.manifest_path.exists():
            m = self.read_manifest()
            if m.get("format") != FORMAT or m.get("fingerprint") != fp:
                why = explain_mismatch(m.get("fields", {}), fields) or "its checkpoint format is not this version's"
                raise InputError(f"--resume: {self.out} holds a run with other inputs or options ({why}); "
                                 "repeat that run's command, or start over with --force instead of --resume")
            self.manifest = m
            if "run" not in m:
                m["run"] = uuid.uuid4().hex
                self.write_manifest()
            # A finished input's folder is kept as it is; every other result folder is written anew.
            done = {s for s, e in m["inputs"].items() if e.get("done") and (self.out / s).is_dir()}
            self._refuse_in_the_way([s for s in stems if s not in done], {m["run"]})
        else:
            earlier = self._earlier_results()
            self._refuse_in_the_way(stems, set(), also_removed=earlier)
            with writing(self.out):
                for p in earlier:
                    shutil.rmtree(p)
                shutil.rmtree(self.root / "ranges", ignore_errors=True)
            self.manifest = {"format": FORMAT, "fingerprint": fp, "run": uuid.uuid4().hex, "fields": fields,
                             "layout": layout, "inputs": {}}
            self.write_manifest()
        self._clean_stale()

    def _earlier_results(self) -> list[Path]:
        """The result folders of the run recorded in OUT (the one --force replaces): the folders of
        its inputs whose marker names it.  Refused when one of them holds anything it did not write."""
        try:
            m = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(m, dict) or not isinstance(m.get("run"), str):
            return []
        listed = m.get("fields", {}).get("inputs") if isinstance(m.get("fields"), dict) else None
        names = [x.get("name") for x in listed if isinstance(x, dict)] if isinstance(listed, list) else []
        names += list(m["inputs"]) if isinstance(m.get("inputs"), dict) else []
        found = []
        for name in sorted({n for n in names if isinstance(n, str) and owned.plain_name(n)}):
            path = self.out / name
            if not path.is_dir() or path.is_symlink() or owned.marker_run(path) != m["run"]:
                continue  # not a folder of that run: left alone, and refused below if it is in the way
            why = owned.problem(path, {m["run"]})
            if why:
                raise InputError(f"{why}; it is in a result folder of the earlier run, which --force "
                                 "would remove: move it away first")
            found.append(path)
        return found

    def _refuse_in_the_way(self, stems, runs, also_removed=()) -> None:
        """Before anything is written: a result folder may replace only a folder of this run."""
        for stem in stems:
            path = self.out / stem
            if path in also_removed:
                continue
            why = owned.problem(path, runs)
            if why:
                raise InputError(f"{why}; this run would write the results of input '{stem}' there: move it "
                                 "away or choose another --out")

    def _clean_stale(self) -> None:
        """Leftovers of a killed run, all under OUT/.virnucpro/: nobody else writes there while we hold the lock."""
        with writing(self.root):
            shutil.rmtree(self.root / "partial", ignore_errors=True)
            shutil.rmtree(self.root / "spool", ignore_errors=True)
            for p in [*self.root.glob(".*.tmp-*"), *self.root.glob("ranges/*/.*.tmp-*")]:
                p.unlink()

    def _worthless(self, fields: dict) -> bool:
        """Nothing saved yet: no range file and no result folder of this run."""
        run = self.manifest.get("run")
        return (not any((self.root / "ranges").glob("*/*.npz"))
                and not any(owned.marker_run(self.out / x["name"]) == run for x in fields["inputs"]))

    # --- manifest (written by the main rank only) ---

    def read_manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{self.manifest_path}: unreadable checkpoint manifest ({e}); "
                             "start over with --force") from None

    def write_manifest(self) -> None:
        data = (json.dumps(self.manifest, indent=1) + "\n").encode()
        atomic_write(self.manifest_path, lambda f: f.write(data), fault="manifest")

    def ranges(self, n: int) -> list[tuple[int, int]]:
        return ranges(n, self.manifest["layout"]["every"])

    def finished(self, stem: str) -> bool:
        """The input's results were written by an earlier run (and are still there)."""
        entry = self.manifest["inputs"].get(stem, {})
        return bool(entry.get("done")) and (self.out / stem).is_dir()

    def start(self, stem: str, chunks: int, ranges: int) -> None:
        self.manifest["inputs"][stem] = {"chunks": chunks, "ranges": ranges, "done": False}
        self.note(stem)

    def reusable(self, data, a: int, b: int, orfs, keep_features: bool = False) -> bool:
        """A whole file of this run holds ORFs a..b-1 (`orfs`); a damaged one is removed."""
        return self._read(data, a, b, keep_features, orfs) is not None

    def note(self, stem: str) -> None:
        done = sorted(tuple(map(int, p.stem.split("-"))) for p in self._dir(stem).glob("*.npz"))
        self.manifest["inputs"][stem]["ranges_done"] = [list(s) for s in done]
        self.write_manifest()

    def finish(self, stem: str, orfs: int) -> None:
        entry = self.manifest["inputs"][stem]
        entry.update(done=True, orfs=orfs, ranges_done=[])
        self.write_manifest()
        with writing(self._dir(stem)):
            shutil.rmtree(self._dir(stem), ignore_errors=True)
