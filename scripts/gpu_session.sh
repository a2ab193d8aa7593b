#!/usr/bin/env bash
# One measurement session on an offline GPU host, in one command: asv over the listed commits
# (each SHA:BENCH item saved by asv on its own, so a time limit costs only the item it cuts),
# then the threshold check, then optionally scripts/gpu_report.py.  Everything lands in $OUT.
#
#   OUT=/tmp/out scripts/gpu_session.sh MACHINE DEADLINE_S SHA:bench_stages SHA:bench_predict ...
#   REQUIRE_GPUS=2 REPORT="--skip reference" scripts/gpu_session.sh h200-x2 580 HEAD:bench_stages
#
# Wheels for what the host lacks (asv, asv-runner, nvitop, pyrodigal, ...) are taken from .whl/
# (or $WHEELS) when present.  A checkout without .git (a copied tree) is rebuilt from .hist/repo.bundle
# (`git bundle create .hist/repo.bundle main`); with both, the bundle's commits are fetched.
set -u
machine=$1; deadline=$2; shift 2; t0=$(date +%s)
out=${OUT:?set OUT to a folder for the results}
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
# The lent H200 host sets PYTHONDONTWRITEBYTECODE=1 and its torch has no bytecode, so every process
# compiled torch's sources again: `import torch._inductor.compile_fx` took 10.6-11.6 s there
# (2026-11-29).  pip installs keep bytecode; here the first process writes it under /tmp.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-/tmp/pycache}
wheels=${WHEELS:-.whl}
if ls "$wheels"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -f .hist/repo.bundle ]; then
  if git rev-parse HEAD >/dev/null 2>&1; then
    git fetch -q .hist/repo.bundle main:refs/remotes/bundle/main
  else
    rm -rf .git; git init -q && git fetch -q .hist/repo.bundle main:main && git symbolic-ref HEAD refs/heads/main && git reset -q
  fi
fi
git config user.email >/dev/null || git config --global user.email bench@virnucpro.local
git config user.name >/dev/null || git config --global user.name bench
elapsed() { echo $(( $(date +%s) - t0 )); }
# results/ on a GPU host (the committed history); a host without a GPU must name another folder.
results=${RESULTS_DIR:-results}
for item in "$@"; do
  sha=${item%%:*}; part=${item#*:}
  left=$(( deadline - $(elapsed) ))
  [ $left -lt 60 ] && { echo "no time left for $item"; continue; }
  timeout "$left" python3 scripts/run_history.py "$sha" --python "$(command -v python3)" --machine "$machine" \
    --results-dir "$results" -- --show-stderr --bench "$part" >> "$out/asv.log" 2>&1
  echo "asv $item rc=$? at $(elapsed) s"
  tar czf "$out/results.tgz" "$results"
done
python3 scripts/check_thresholds.py --results-dir "$results" --machine "$machine" --require-gpus "${REQUIRE_GPUS:-0}" \
  --markdown "$out/thresholds.md" --json "$out/thresholds.json" --plot "$out/scaling.png"
echo "check_thresholds rc=$?"
left=$(( deadline - $(elapsed) ))
if [ -n "${REPORT+x}" ] && [ $left -gt 60 ]; then
  # shellcheck disable=SC2086
  timeout "$left" python3 scripts/gpu_report.py --out "$out" $REPORT > "$out/gpu_report.log" 2>&1
  echo "gpu_report rc=$? at $(elapsed) s"
fi
