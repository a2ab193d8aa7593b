"""Which commit made a metric worse: a search over first-parent commits, direction-aware,
significance-tested, with more interleaved rounds where a verdict is not yet significant.

The search knows commits by position and asks three things of its caller: the rows of
suite.verdicts.compare between two commits (their results as measured so far), one more
interleaved round of a few commits, and how many rounds a commit has.  Between the ends, every
metric that compare flags as a REGRESSION is searched apart: a probe m between i and j is
measured in rounds beside i and j until both halves are decided; a half that is a REGRESSION is
searched on (both halves, where both are: two steps in one range are told apart); a range of
two adjacent commits names the later one.  Where neither half is worse by more than the
threshold, the step is spread over the range (or inside the noise) and is reported as such, not
as a culprit.  A commit that cannot be measured is skipped (as `git bisect skip`) for its
nearest neighbour; a range left with none is reported as undecided.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from suite.verdicts import IMPROVED, NO_CHANGE, NOT_SIGNIFICANT, REGRESSION

DECIDED = (REGRESSION, IMPROVED, NO_CHANGE)


@dataclass
class Search:
    commits: list                           # oldest first: commits[0] good, commits[-1] bad
    rows: Callable[[str, str], dict]        # (base, head) -> {(name, params): compare's row}
    measure: Callable[[list], None]         # one interleaved round of these commits
    rounds: Callable[[str], int]            # rounds a commit has (a commit that cannot run: 0 for ever)
    skipped: Callable[[str], str | None]    # why a commit cannot be measured, None if it can
    min_rounds: int = 2
    max_rounds: int = 6
    probes: list = field(default_factory=list)
    # verdicts as they were when decided, by (key, base, head): later rounds of a commit (a probe's
    # neighbour measured again) must not change a decision taken, or a resumed search would go
    # another way than the one it resumes
    decided: dict = field(default_factory=dict)

    def _memo(self, key, a: str, b: str) -> str:
        return "|".join([*map(str, key), a, b])

    def _settle(self, group: list, pairs: list, key) -> list:
        """compare's rows of `key` for each (base, head) of `pairs`, after rounds of `group` until
        each is decided or every commit of the group has max_rounds."""
        memo = [self._memo(key, a, b) for a, b in pairs]
        if all(m in self.decided for m in memo):
            return [self.decided[m] for m in memo]
        while True:
            live = [c for c in group if not self.skipped(c)]
            got = [self.rows(a, b).get(key) for a, b in pairs]
            counts = [self.rounds(c) for c in live]
            done = all(r is not None and r["verdict"] in DECIDED for r in got)
            if len(live) < len(group):
                return got
            if (done and min(counts) >= self.min_rounds) or min(counts) >= self.max_rounds:
                self.decided.update(zip(memo, got))
                return got
            self.measure([c for c in live if self.rounds(c) < self.max_rounds])

    def ends(self) -> dict:
        """{key: row} of every metric compared between the ends, after the rounds they need."""
        good, bad = self.commits[0], self.commits[-1]
        memo = self._memo(("ends",), good, bad)
        if memo in self.decided:
            return {tuple(r["key"]): r for r in self.decided[memo]}
        while True:
            rows = self.rows(good, bad)
            counts = [self.rounds(good), self.rounds(bad)]
            open_ = [k for k, r in rows.items() if r["verdict"] == NOT_SIGNIFICANT]
            if self.skipped(good) or self.skipped(bad):
                return rows
            if min(counts) >= self.max_rounds or (min(counts) >= self.min_rounds and not open_):
                self.decided[memo] = [{**r, "key": list(k)} for k, r in rows.items()]
                return rows
            self.measure([good, bad])

    def _pick(self, i: int, j: int) -> int | None:
        """The commit nearest the middle of (i, j) that can be measured."""
        inside = sorted(range(i + 1, j), key=lambda m: (abs(2 * m - i - j), m))
        return next((m for m in inside if not self.skipped(self.commits[m])), None)

    def find(self, key, i: int = 0, j: int | None = None, row: dict | None = None) -> list[dict]:
        """Findings for `key` in (i, j], whose ends compare flags as a REGRESSION (`row`)."""
        j = len(self.commits) - 1 if j is None else j
        c = self.commits
        if j == i + 1:
            return [{"kind": "first bad commit", "commit": c[j], "parent": c[i], "row": row}]
        while True:
            m = self._pick(i, j)
            if m is None:
                return [{"kind": "undecided", "from": c[i], "to": c[j], "row": row,
                         "note": "every commit between them was skipped: " +
                                 "; ".join(f"{x[:8]} {self.skipped(x)}" for x in c[i + 1:j])}]
            left, right = self._settle([c[i], c[m], c[j]], [(c[i], c[m]), (c[m], c[j])], key)
            if not self.skipped(c[m]):
                self.probes.append(c[m])
                break
        found = []
        if left is not None and left["verdict"] == REGRESSION:
            found += self.find(key, i, m, left)
        if right is not None and right["verdict"] == REGRESSION:
            found += self.find(key, m, j, right)
        if not found:
            undecided = [r for r in (left, right) if r is None or r["verdict"] not in DECIDED]
            found.append({"kind": "undecided" if undecided else "spread or inside the noise", "from": c[i],
                          "to": c[j], "row": row, "probe": c[m], "halves": [left, right],
                          "note": "a half still not significant after the most rounds" if undecided else
                          "neither half is worse by more than its threshold: no one commit to name"})
        return found
