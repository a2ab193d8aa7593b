#!/usr/bin/env bash
# One device session for issue 20 (and 22's GPU checks), run in the device's copy of the tree:
# the stage history (A and the 14 first-parent commits before it), an interleaved A/B with a
# throwaway slow-down commit B plus three more runs of A (five in all: the noise table), and the
# end-to-end history of five commits.  Items already done are skipped, so the same call can be
# repeated after the device's 10-minute limit cut it.  Everything lands in $OUT.
#
#   Here, once:  git bundle create .hist/in/repo.bundle main ab-esm2-slower   (+ wheels in .whl/)
#   Device:      OUT=... bash scripts/probes/suite_history_session.sh A B [DEADLINE_S]
#   (carry .whl and .hist/in; never .hist itself, which holds the results between calls)
set -u
A=$1; B=$2; deadline=${3:-525}
mkdir -p .hist && cp .hist/in/repo.bundle .hist/repo.bundle
ST='^bench_stages\.(TrackTranslate\.|.*, 1\)$)'
PR='^bench_predict\.(TimeStartup\.time_startup\(1\)|TimePredict\.time_predict\(1, True\)|TrackPredictThroughput\.track_predict_throughput\(1\))$'
# A~k is the k-th first-parent ancestor: gpu_session.sh resolves it once it has the bundle's history.
items=("$A:$ST@.hist/runs/A1")
for k in $(seq 1 14); do items+=("$A~$k:$ST"); done
items+=("$B:$ST@.hist/runs/B1" "$A:$ST@.hist/runs/A2" "$A:$ST@.hist/runs/A3" "$A:$ST@.hist/runs/A4" "$A:$ST@.hist/runs/A5")
for k in 0 1 2 3 4; do items+=("$A~$k:$PR"); done
RESULTS_DIR=.hist/results bash scripts/gpu_session.sh auto "$deadline" "${items[@]}"
tar czf "$OUT/hist.tgz" .hist/results .hist/runs 2>/dev/null
