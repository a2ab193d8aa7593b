"""The benchmark suite's library: what the commands in scripts/ share, each concept in one place.

  results     asv's files: benchmarks.json, a machine's result files by commit, one commit's
              results as series (a value, its statistics and samples per parameter set)
  directions  which way is better for a metric, and asv's step detection turned that way
  thresholds  benchmarks/thresholds.toml, and the regression threshold of one metric
  commits     git: a ref's hash, the first-parent order of main, a range
  verdicts    two commits compared: ratio, direction, threshold and significance -> a verdict
  bisect      which commit made a metric worse: the search over first-parent commits
  checks      one commit against the thresholds: speedup, utilisation, regression, bottlenecks
  asvrun      running asv: machine registration, a commit in a worktree, a results folder's config
  site        the published site's regressions and their feed

A command runs as a file (`python scripts/check_thresholds.py`), so its folder is on sys.path and
`from suite import results` needs no edit of the path; tests/conftest.py puts scripts/ there too.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
