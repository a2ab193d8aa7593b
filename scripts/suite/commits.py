"""git, as the tools ask it: a ref's full hash, main's order of commits, a range."""
from __future__ import annotations

import subprocess

from suite import ROOT


def git(repo, *args) -> str | None:
    """git's output in `repo`, None where git fails (no repository, an unknown ref)."""
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def resolve(ref: str, repo=ROOT) -> str:
    """A git ref as a full hash; anything git does not know is taken as a hash (prefix)."""
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") or ref


def on_main(repo=ROOT) -> list[str]:
    """Full hashes of branch main, newest first (empty without a repository or a main)."""
    return (git(repo, "rev-list", "main") or "").split()


def in_range(spec: str, repo=ROOT) -> list[str]:
    """'A..B' -> the commits after A up to B, oldest first; a single ref -> that commit.
    Raises subprocess.CalledProcessError for a ref git does not know."""
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True,  # noqa: E731
                                    text=True).stdout.strip()
    if ".." in spec or spec.endswith("^!"):
        return run("rev-list", "--reverse", spec).split()
    return [run("rev-parse", spec)]


def between(groups: dict, base: str, head: str, repo=ROOT) -> list:
    """Commit prefixes (keys of `groups`) from `base` to `head`: those on main between them, in
    order; just the two where git does not know the order (or `base` comes after `head`)."""
    order = [p for p in (full[:8] for full in reversed(on_main(repo))) if p in groups]
    if base in order and head in order and order.index(base) < order.index(head):
        return order[order.index(base):order.index(head) + 1]
    return [base, head]


def first_parent(good: str, bad: str, repo=ROOT) -> list[str]:
    """[good, ..., bad]: the first-parent commits from `good` to `bad`, oldest first (full hashes).
    Raises ValueError where git does not know a ref or `good` is not on bad's first-parent line."""
    a, b = git(repo, "rev-parse", "--verify", "--quiet", f"{good}^{{commit}}"), \
        git(repo, "rev-parse", "--verify", "--quiet", f"{bad}^{{commit}}")
    if not a or not b:
        raise ValueError(f"git does not know {good if not a else bad!r} in {repo}")
    line = (git(repo, "rev-list", "--first-parent", "--reverse", f"{a}..{b}") or "").split()
    if a != b and (not line or git(repo, "rev-parse", f"{line[0]}^") != a):
        raise ValueError(f"{good} is not on the first-parent line of {bad}")
    return [a, *line]
