#!/usr/bin/env bash
# Where a short run's wall time goes, on a GPU host, from the repository root (wheels in .whl/):
# timestamps of the worker's summary line (after pipeline.run), of the main process's warning
# (after the worker joined) and of exit; with Inductor's compile worker pool on (default) and off.
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/pyrodigal*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
F=$(VIRNUCPRO_BENCH_PROFILE=full python3 -c "from benchmarks import common; print(common.workload('full')['few_reads'])")
for run in fill default threads1 default2 threads1b; do
  env=""; case $run in threads1*) env="TORCHINDUCTOR_COMPILE_THREADS=1";; esac
  s=$(date +%s.%N)
  env $env python3 -m virnucpro predict $F -l 500 -o /tmp/$run --random-weights --preset full --gpus 1 --no-progress --force 2>&1 \
    | while IFS= read -r l; do echo "$(python3 -c "print(round($(date +%s.%N)-$s,2))") ${l:0:60}"; done
  e=$(python3 -c "print(round($(date +%s.%N)-$s,2))")
  python3 -c "import json,glob;r=json.load(open(glob.glob('/tmp/$run/*/run.json')[0]));print('$run exit $e s, startup',r['startup_seconds'],'total',r['total_seconds'],{k:v for k,v in r['seconds'].items() if v>0.1})"
done
