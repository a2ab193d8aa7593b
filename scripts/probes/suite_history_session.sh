#!/usr/bin/env bash
# What issue 30 still needs of a device, run in the device's copy of the tree, in order of value:
# the head's end-to-end run, the end-to-end history (one more first-parent commit before A = 5bb6dd9;
# A, A~1, A~2 and the heads 3e0d9a6 and 3347631 are measured), the stage history (four more commits:
# 13 of the 15 asked are in results/h100-x1, c42e46a's too), Q's stages, then gpu_report's layouts
# section with the call's time left.
# Items already done are skipped, so the same call can be repeated after the device's 10-minute
# limit cut it.  Everything lands in $OUT.  A stage item takes ~60 s on an H100, an end-to-end
# item ~140 s.
#
#   Here, once:  git bundle create .hist/in/repo.bundle main    (+ wheels in .whl/)
#   Device:      OUT=... bash scripts/probes/suite_history_session.sh Q [DEADLINE_S]
#   Here, after each call:  mkdir -p .hist/in/prev && tar xzf FILES_AT/hist.tgz -C .hist/in/prev
#   (carry .whl and .hist/in.  The device keeps nothing of .hist between calls, not even on a warm
#   machine (2026-12-06: the second call found no .hist/results and measured five items again), so
#   the results of earlier calls travel back in .hist/in/prev and seed .hist here.)
# After these (issue 33's A/B, one process): OUT=... REPORT="--only stages --esm-layer-variant" \
#   bash scripts/gpu_session.sh auto 525   (gpu_report alone: the stages with and without the fused layer)
set -u
Q=$1; deadline=${2:-525}; A=5bb6dd9
mkdir -p .hist && cp .hist/in/repo.bundle .hist/repo.bundle
if [ -d .hist/in/prev/.hist ]; then cp -rn .hist/in/prev/.hist/. .hist/; fi
ST='^bench_stages\.(TrackTranslate\.|.*, 1\)$)'
PR='^bench_predict\.(TimeStartup\.time_startup\(1\)|TimePredict\.time_predict\(1, True\)'
PR+='|TrackPredictThroughput\.track_predict_throughput\(1\)|TrackPredictedSpeedup\.track_predicted_speedup\((2|4|8)\))$'
# A~k is the k-th first-parent ancestor, resolved by gpu_session.sh.
# Q's end-to-end run first: the head's time_predict and track_predicted_speedup (issue 29).
items=("$Q:$PR")
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
if [[ "$gpu" == *H200* ]]; then
  # h200-x1's history stops at a30f379 (2026-12-03): the head and A there, stages then end to end.
  items+=("$Q:$ST" "$A:$ST" "$A:$PR")
else
  items+=("$A~3:$PR")  # A~1 and A~2 measured 2026-12-07
  for k in 9 10 15 18; do items+=("$A~$k:$ST"); done
  items+=("$Q:$ST")
fi
REPORT="--only layouts" RESULTS_DIR=.hist/results bash scripts/gpu_session.sh auto "$deadline" "${items[@]}"
tar czf "$OUT/hist.tgz" .hist/results .hist/runs 2>/dev/null
