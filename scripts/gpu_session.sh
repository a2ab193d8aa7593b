#!/usr/bin/env bash
# One measurement session on an offline GPU host, in one command: asv over the listed commits
# (each SHA:BENCH[@DIR] item saved by asv on its own, so a time limit costs only the item it cuts),
# then the threshold check, then optionally scripts/gpu_report.py.  Everything lands in $OUT.
# BENCH is asv's --bench regex (a parameter set may be named: 'time_startup\(1\)'); @DIR writes
# that item's results to DIR instead (one folder per repeated run, for scripts/noise_table.py).
# An item whose results are already in its folder is not run again, so a session cut by the
# device's time limit goes on where it stopped when the same list is given again.
# MACHINE 'auto' names the machine after the GPU: h100-x1, h200-x1, ...
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
  # other branches of the bundle (e.g. a throwaway commit to compare against), without checking them out
  git fetch -q .hist/repo.bundle '+refs/heads/*:refs/remotes/bundle/*' 2>/dev/null || true
fi
git config user.email >/dev/null || git config --global user.email bench@virnucpro.local
git config user.name >/dev/null || git config --global user.name bench
elapsed() { echo $(( $(date +%s) - t0 )); }
if [ "$machine" = auto ]; then
  machine=$(python3 -c 'import torch; n = torch.cuda.device_count(); name = torch.cuda.get_device_name(0) if n else "cpu"
print(next((k for k in ("h100", "h200", "a100", "b200") if k in name.lower()), "gpu") + f"-x{n}")')
fi
echo "machine $machine"
# results/ on a GPU host (the committed history); a host without a GPU must name another folder.
results=${RESULTS_DIR:-results}
folders=()
for item in "$@"; do
  sha=${item%%:*}; part=${item#*:}; dir=$results
  case "$part" in *@*) dir=${part##*@}; part=${part%@*};; esac
  folders+=("$dir")
  full=$(git rev-parse --verify -q "$sha^{commit}" || echo "$sha")
  done_mark="$dir/.done/$machine-${full:0:8}-$(printf '%s' "$part" | md5sum | cut -c1-8)"
  if [ -e "$done_mark" ]; then echo "asv $item done before"; continue; fi
  left=$(( deadline - $(elapsed) ))
  [ $left -lt 60 ] && { echo "no time left for $item"; continue; }
  timeout "$left" python3 scripts/run_history.py "$full" --python "$(command -v python3)" --machine "$machine" \
    --results-dir "$dir" -- --show-stderr --bench "$part" >> "$out/asv.log" 2>&1
  rc=$?
  echo "asv $item rc=$rc at $(elapsed) s"
  [ $rc -eq 0 ] && mkdir -p "$dir/.done" && touch "$done_mark"
  tar czf "$out/results.tgz" $(printf '%s\n' "${folders[@]}" | sort -u)
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
