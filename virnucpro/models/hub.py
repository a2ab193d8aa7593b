"""Where downloaded weights live: the Hugging Face cache, shared by both embedders' loaders."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def hf_cache_roots() -> list[Path]:
    """Hub cache folders in the order huggingface_hub itself consults its variables."""
    env = os.environ
    roots = [env.get("HF_HUB_CACHE"), env.get("HUGGINGFACE_HUB_CACHE")]
    if env.get("HF_HOME"):
        roots.append(os.path.join(env["HF_HOME"], "hub"))
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    roots.append(os.path.join(xdg, "huggingface", "hub"))
    return list(dict.fromkeys(Path(r).expanduser() for r in roots if r))


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
