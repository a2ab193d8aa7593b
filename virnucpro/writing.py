"""Writing an input (rank 0): once every range of it is saved, by whichever rank, its ranges are
gathered from the range store in ORF order, its run record made (run.json, with the queue's
record that virnucpro/replay.py replays) and its result files written."""
from __future__ import annotations

import time

from virnucpro import faults, perf, trace
from virnucpro.outputs import write_result_dir
from virnucpro.scoring import Prediction


def write_input(run, k: int) -> None:
    """Rank 0, for the run being served (serving._Run): input k's results, once every one of its
    ranges is saved."""

    engine, store, data, clock = run.engine, run.store, run.inputs[k], run.clocks[k]
    n = len(run.layouts[k])
    run.queue.wait_done(k, n, run.stop, f"input {data.path}")
    stream, prep_clock, translated = run.prepared(k)
    translated.result()  # every chunk cut and listed
    t0 = time.perf_counter()
    first = run.first_item.get(k)
    records = run.queue.records(range(first, first + n)) if n else []
    models = engine.models
    with clock("gather"):
        spans = [(x.start, x.stop) for x in map(stream.wait, range(n)) if x.stop > x.start]
        cols = store.load(data, spans, models.dna.dim + models.protein.dim, run.keep)
    faults.point("merge")
    pred = Prediction(cols["logits"], cols["probs"], cols["features"])
    seconds = {**models.seconds, **prep_clock.seconds, **clock.seconds}
    begun = min((x["start"] for x in records), default=None)
    info = {**run.run_info, "device": str(models.device), "weights": models.weights, "world_size": run.r.world,
            "persistent_models": engine.persistent,
            "batch_tokens": {"dnabert": models.dna.batch_tokens, "esm2": models.protein.batch_tokens},
            "checkpoint": {"ranges": n, "reused": sum(bool(x.get("reused")) for x in records)},
            # by this process so far: more than after the first input means a recompilation
            "compiled_graphs": perf.compiled_graphs(),
            "seconds": {name: (round(v, 4) if isinstance(v, float) else v) for name, v in seconds.items()},
            # from this input's first range taken to its results (inputs overlap in the queue)
            "total_seconds": round(time.time() - run.origin - begun, 3) if begun is not None else
            round(time.perf_counter() - t0, 3),
            # from the first input's scoring (after start-up) to this input's results
            "seconds_since_first_input": round(time.perf_counter() - run.t_first, 3),
            # what virnucpro/replay.py replays: times in seconds from the queue's start
            "queue": {"ranks": run.r.world, "ahead": run.ahead,
                      "before_queue_seconds": run.before_queue, "index": k, "first_item": first,
                      "merge_seconds": round(time.perf_counter() - t0, 4), "ranges": records}}
    final, viral = write_result_dir(run.out, data, pred, info, models.random, run.keep)
    trace.mark("results_written")
    with run.lock:
        store.finish(data.stem, len(data.orfs))
    engine.history.append({"stem": data.stem, "orfs": len(data.orfs), "seconds": info["total_seconds"],
                           "esm_tokens": data.protein_tokens, "stage_seconds": clock.seconds})
    run.lines[k] = (f"{data.path}: {len(data.records)} sequences, {len(data.chunks)} chunks, "
                     f"{len(data.orfs)} ORFs, {viral} chunks called viral, {len(data.skipped)} skipped -> {final}")
    run.release(k)
