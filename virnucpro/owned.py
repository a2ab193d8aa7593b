"""What virnucpro made in an output folder, so that it removes or replaces exactly that.

A result folder OUT/<stem>/ carries MARKER, a small JSON file that names the run which wrote
it (the run id kept in OUT/.virnucpro/manifest.json) and every file written into it.  A folder
is replaced or removed only when its marker names an expected run and it holds nothing but
the listed files: a user's folder, file or link of that name, or a file a user put into a
result folder, stops the command instead (InputError, exit code 2).  Everything under
OUT/.virnucpro/ is the program's own.  `virnucpro orfs` keeps ORF_MARKER beside its three
files, with the size and modification time of each, and replaces only files that still match.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

MARKER = ".virnucpro-result"
ORF_MARKER = ".virnucpro-orfs"
ORF_FILES = ("chunks.fa", "orfs.fna", "orfs.faa")
# A result folder's name plus the ".<pid>" of its temporary name must fit NAME_MAX (255 bytes).
MAX_NAME_BYTES = 240


def plain_name(name: str) -> bool:
    """A name that is one path component inside OUT and none of the program's own (those start with a dot)."""
    return (bool(name) and "/" not in name and "\0" not in name and not name.startswith(".")
            and len(name.encode("utf-8", "surrogateescape")) <= MAX_NAME_BYTES)


def shown(path) -> str:
    """A path for a one-line message: characters that are not printable as escapes (`\\n`, `\\x1b`)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in str(path))


def stamp(folder: Path, run: str | None) -> None:
    """Record, as the last file written into `folder`, which run wrote it and what it holds."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.name != MARKER)
    with open(folder / MARKER, "w") as f:
        json.dump({"virnucpro_result": 1, "run": run, "files": files}, f)
        f.write("\n")


def _marker(folder: Path) -> dict | None:
    try:
        m = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(m, dict) and isinstance(m.get("run"), (str, type(None))) and isinstance(m.get("files"), list)
          and all(isinstance(f, str) for f in m["files"]))
    return m if ok else None


def marker_run(folder: Path):
    """The run that folder's marker names (None for a caller without checkpoints); False without a marker."""
    m = _marker(folder) if folder.is_dir() and not folder.is_symlink() else None
    return False if m is None else m.get("run")


def problem(folder: Path, runs) -> str | None:
    """Why `folder` must not be replaced or removed; None when it is a complete result folder
    of one of `runs` or does not exist."""
    if not os.path.lexists(folder):
        return None
    if folder.is_symlink() or not folder.is_dir():
        return f"{shown(folder)}: is not a folder virnucpro made"
    m = _marker(folder)
    if m is None:
        return f"{shown(folder)}: is a folder virnucpro did not make (it holds no {MARKER})"
    if m.get("run") not in runs:
        return f"{shown(folder)}: was made by another virnucpro run than the one recorded in this output folder"
    files = set(m["files"])
    dirs = {d.as_posix() for f in files for d in Path(f).parents} - {"."}
    for top, subdirs, names in os.walk(folder):
        for name in subdirs + names:
            path = Path(top) / name
            rel = path.relative_to(folder).as_posix()
            if rel == MARKER or (rel in files and path.is_file() and not path.is_symlink()):
                continue
            if rel in dirs and path.is_dir() and not path.is_symlink():
                continue
            return f"{shown(path)}: was not written by virnucpro"
    return None


def orf_files_in_the_way(out: Path) -> str | None:
    """The first of OUT's chunks.fa / orfs.fna / orfs.faa that `virnucpro orfs` did not write, as
    a reason; a file it wrote but that changed since (size or modification time) counts as not its own."""
    try:
        known = json.loads((out / ORF_MARKER).read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    for name in ORF_FILES:
        path = out / name
        if not os.path.lexists(path):
            continue
        st = path.lstat()
        if not path.is_file() or path.is_symlink() or known.get(name) != [st.st_size, st.st_mtime_ns]:
            return f"{shown(path)}: was not written by virnucpro orfs, or changed since"
    return None


def stamp_orf_files(out: Path) -> None:
    stats = {name: [(out / name).stat().st_size, (out / name).stat().st_mtime_ns] for name in ORF_FILES}
    tmp = out / f".{ORF_MARKER}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(stats) + "\n")
    os.replace(tmp, out / ORF_MARKER)
