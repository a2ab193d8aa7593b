#!/usr/bin/env bash
# What issue 20 (and 21, 22) still need of a device, run in the device's copy of the tree: the stage
# history (14 first-parent commits before A = 5bb6dd9, whose five runs and the A/B against its
# slow-down are in docs/perf/suite_trust_h100-x1/), the end-to-end history (the queue's head Q,
# A and three before it), one more stage run of A (is a first run on a fresh host faster?), then
# gpu_report's layouts section.
# Items already done are skipped, so the same call can be repeated after the device's
# 10-minute limit cut it.  Everything lands in $OUT.  A stage item takes ~54 s on an H100, an
# end-to-end item ~150 s.
#
#   Here, once:  git bundle create .hist/in/repo.bundle main    (+ wheels in .whl/)
#   Device:      OUT=... bash scripts/probes/suite_history_session.sh Q [DEADLINE_S]
#   (carry .whl and .hist/in; never .hist itself, which holds the results between calls)
set -u
Q=$1; deadline=${2:-525}; A=5bb6dd9
mkdir -p .hist && cp .hist/in/repo.bundle .hist/repo.bundle
ST='^bench_stages\.(TrackTranslate\.|.*, 1\)$)'
PR='^bench_predict\.(TimeStartup\.time_startup\(1\)|TimePredict\.time_predict\(1, True\)'
PR+='|TrackPredictThroughput\.track_predict_throughput\(1\)|TrackPredictedSpeedup\.track_predicted_speedup\((2|4|8)\))$'
# A~16 (1acaa9b) brought the filler blocks and A~17 is the commit before it: their pair is the
# filler's cost (issue 22).  A~k is the k-th first-parent ancestor, resolved by gpu_session.sh.
items=("$Q:$PR" "$A:$PR" "$Q:$ST" "$A~16:$ST" "$A~17:$ST" "$A:$ST@.hist/runs/A6")
for k in 1 2 3 4 5 6 7 8 9 10 15 18; do items+=("$A~$k:$ST"); done
for k in 1 2 3; do items+=("$A~$k:$PR"); done
# Once every item is done, the call's time left goes to issue 22's hashes under three layouts.
REPORT="--only layouts" RESULTS_DIR=.hist/results bash scripts/gpu_session.sh auto "$deadline" "${items[@]}"
tar czf "$OUT/hist.tgz" .hist/results .hist/runs 2>/dev/null
