"""A run interrupted by SIGINT or SIGTERM, as from a terminal or a batch scheduler: one line, workers gone, and a resume gives the same bytes."""
import os
import signal
import time
from pathlib import Path

import pytest

from test_reliability import (_alive, _children, assert_kept, assert_same_results, baseline, launch,  # noqa: F401
                              predict, reused, saved_by)
from virnucpro import checkpoint



INTERRUPTED = "interrupted: run the same command with --resume to continue"


INTERRUPTS = {"SIGINT": ("esm2:3:stop", (), signal.SIGINT, "main"),
              "SIGTERM": ("esm2:3:stop", (), signal.SIGTERM, "main"),
              "SIGTERM-2-workers": ("esm2:2:stop@1", ("--cpu-workers", "2"), signal.SIGTERM, "main"),
              "SIGINT-2-workers-group": ("esm2:2:stop@1", ("--cpu-workers", "2"), signal.SIGINT, "group"),
              "SIGTERM-2-workers-group": ("esm2:2:stop@1", ("--cpu-workers", "2"), signal.SIGTERM, "group")}


def _state(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """Every case at once; each run stops itself at a known point, then gets its signal as from a
    batch scheduler (the main process) or a terminal's Ctrl-C (the whole process group)."""
    root = tmp_path_factory.mktemp("interrupted")
    runs = {c: (root / c, launch(root / c, fault, *extra, start_new_session=True))
            for c, (fault, extra, _, _) in INTERRUPTS.items()}
    try:
        found = {}
        for case, (out, p) in runs.items():
            _, _, sig, to = INTERRUPTS[case]
            deadline = time.monotonic() + 240
            while not any(_state(pid) == "T" for pid in (p.pid, *(c for c, _ in _children(p.pid)))):
                assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() else ""
                time.sleep(0.2)
            workers = [pid for pid, _ in _children(p.pid)]
            (os.killpg if to == "group" else os.kill)(p.pid, sig)
            if _state(p.pid) == "T":
                os.kill(p.pid, signal.SIGCONT)
            found[case] = (out, workers)
        return {c: (out, p.wait(timeout=120), p.stderr.read(), found[c][1]) for c, (out, p) in runs.items()}
    finally:
        for _, p in runs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.mark.parametrize("case", list(INTERRUPTS))
def test_interrupt_says_one_line_and_resume_is_byte_identical(interrupted, baseline, case):
    out, rc, err, workers = interrupted[case]
    assert rc == 128 + INTERRUPTS[case][2], err[-3000:]
    assert err.strip() == INTERRUPTED
    deadline = time.monotonic() + 30
    while any(map(_alive, workers)):
        assert time.monotonic() < deadline, "workers outlived their interrupted main process"
        time.sleep(0.2)
    if not workers:  # the main process unwound: the temp file of the step in flight is gone
        assert not list((out / checkpoint.DIR).rglob(".*.tmp-*"))
    one = INTERRUPTS[case][0] == "esm2:3:stop"
    ranges = saved_by(out, 0 if one else 1)
    assert len(ranges) == (2 if one else 1), ranges
    unfinished = assert_kept(out, ranges)
    assert predict(out, "--resume") == 0  # the lock was released
    assert_same_results(out, baseline)
    assert not list((out / checkpoint.DIR).rglob(".*.tmp-*"))  # a killed worker's, removed by the resume
    assert all(reused(out, stem) >= sum(s == stem for s, _ in ranges) for stem in unfinished)
