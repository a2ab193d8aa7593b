"""virnucpro/replay.py: the engine's queue replayed over measured seconds, on synthetic durations
whose schedules are worked out by hand."""
import json

import pytest

from virnucpro.replay import (Input, Spawn, measured, measured_spawn, predicted_wall, replay, spawn_cost, speedup,
                              terms)

# A: a long range then three short ones; B: two of 2 s.  1 s of start-up before the queue.
INPUTS = [Input([3, 1, 1, 1], write=0.5), Input([2, 2], write=1)]


def test_one_rank_does_everything_in_order_and_writes_between_ranges():
    s = replay(INPUTS, 1, before=1)
    assert s.ranges == [(0, 1, 4), (0, 4, 5), (0, 5, 6), (0, 6, 7), (0, 7.5, 9.5), (0, 9.5, 11.5)]
    assert s.written == [(7, 7.5), (11.5, 12.5)]
    assert s.wall == 12.5


def test_two_ranks_pull_from_one_queue_across_inputs_and_rank_0_pays_the_writing_threads_seconds():
    s = replay(INPUTS, 2, before=1)
    # rank 1 takes the three short ranges while rank 0 is on the long one; A is written at 4 in
    # rank 0's thread, and rank 0 pays its 0.5 s before it takes B's second range
    assert s.ranges == [(0, 1, 4), (1, 1, 2), (1, 2, 3), (1, 3, 4), (1, 4, 6), (0, 4.5, 6.5)]
    assert s.written == [(4, 4.5), (6.5, 7.5)]
    assert s.wall == 7.5
    # the measured 1-rank run took 15 s: 2.5 s the replay does not hold (model load, exit) stay
    assert predicted_wall(INPUTS, 2, 15, before=1) == 15 - 12.5 + 7.5
    assert speedup(INPUTS, 2, 15, before=1) == 15 / 10
    assert speedup(INPUTS, 1, 15, before=1) == 1


def test_n_spawned_ranks_add_the_measured_spawn_and_share_the_cores_for_their_start_up():
    spawn = Spawn(startup=1.0, rest=0.5)
    assert spawn_cost(spawn, 1) == 0  # one rank: the in-process run measured
    assert spawn_cost(spawn, 2) == spawn_cost(spawn, 2, cores=16) == spawn_cost(spawn, 2, cores=2) == 1.5
    assert spawn_cost(spawn, 3, cores=2) == 1.0 * 3 / 2 + 0.5  # start-ups contend, the teardown waits
    assert spawn_cost(Spawn(-0.2, -0.1), 4) == 0  # a measurement inside the noise adds nothing, never subtracts
    assert predicted_wall(INPUTS, 2, 15, before=1, spawned=spawn_cost(spawn, 2)) == 15 - 12.5 + 7.5 + 1.5
    assert predicted_wall(INPUTS, 3, 15, before=1, spawned=spawn_cost(spawn, 3, 2)) == \
        15 - 12.5 + replay(INPUTS, 3, before=1).wall + 2.0


def test_the_spawn_cost_is_read_from_the_runs_traces_and_walls(tmp_path):
    def traced(name, start, imported, loaded, written, worker=1):
        path = tmp_path / name
        marks = [(1, "process_start", start), (1, "torch_imported", start + imported),
                 (worker, "models_loaded", start + loaded - 0.5), (worker + 1, "models_loaded", start + loaded),
                 (worker, "results_written", start + written)]
        path.write_text("".join(f"{pid} {m} {t}\n" for pid, m, t in marks))
        return path

    # in-process: models loaded 0.2 s after the import, 0.05 s from the last write to the end
    inproc = [(4.05, traced("a", 100.0, 1.5, 1.7, 4.0)), (3.55, traced("b", 200.0, 1.0, 1.2, 3.5))]
    # spawned: the last worker's models 1.2 / 1.8 s after the command's import (an import that took
    # 2.5 s in one run does not count), then 0.8 / 1.2 s to the end; its queue was shorter
    spawned = [(4.5, traced("c", 300.0, 2.5, 3.7, 3.7, worker=2)), (4.5, traced("d", 400.0, 1.0, 2.8, 3.3, worker=2))]
    assert measured_spawn(spawned, inproc) == Spawn(startup=1.5 - 0.2, rest=1.0 - 0.05)


@pytest.mark.parametrize("ahead", [False, True])
def test_never_more_than_the_ranks(ahead):
    """Writes cost one rank its time at every N: a replay that let a thread write for free would
    predict 2.0x and more from this run, whose writes are a third of its seconds."""
    heavy = [Input([1.0] * 4, write=2.0) for _ in range(3)]
    for n in (2, 3, 4, 8, 16):
        for wall in (18.0, 30.0):
            assert speedup(heavy, n, wall, ahead=ahead) <= n
            assert speedup(heavy, n, wall, ahead=ahead, spawned=spawn_cost(Spawn(0.5, 0.1), n, 2)) < \
                speedup(heavy, n, wall, ahead=ahead)
    assert replay(heavy, 2, ahead=ahead).wall >= replay(heavy, 1, ahead=ahead).wall / 2


def test_a_rank_that_reads_ahead_holds_its_next_range_while_it_works():
    s = replay(INPUTS, 2, before=1, ahead=True)
    # rank 0 took A's second range at 1 s, when it started the long one: it waits for it until 4 s
    assert s.ranges == [(0, 1, 4), (0, 4, 5), (1, 1, 2), (1, 2, 3), (1, 3, 5), (1, 5, 7)]
    assert s.written == [(5, 5.5), (7, 8)]
    assert s.wall == 8
    # one rank reading ahead: the same as without, writes included
    assert replay(INPUTS, 1, before=1, ahead=True).wall == 12.5


def test_more_ranks_than_ranges_and_an_input_without_ranges():
    s = replay([Input([2], 0.5), Input([], 0.25), Input([1], 0.5)], 4)
    assert s.ranges == [(0, 0, 2), (1, 0, 1)]
    assert s.written == [(2, 2.5), (2.5, 2.75), (2.75, 3.25)]
    assert s.wall == 3.25
    with pytest.raises(ValueError, match="at least 1"):
        replay(INPUTS, 0)


def test_measured_reads_the_queue_record_of_every_input_in_queue_order(tmp_path):
    def run_json(stem, index, first, ranges, merge, write):
        (tmp_path / stem).mkdir()
        rec = [{"item": first + i, "start": s, "end": e} for i, (s, e) in enumerate(ranges)]
        (tmp_path / stem / "run.json").write_text(json.dumps({
            "checkpoint": {"ranges": len(ranges), "reused": 0}, "seconds": {"write_results": write},
            "queue": {"ranks": 1, "ahead": False, "before_queue_seconds": 1.5, "index": index, "first_item": first,
                      "merge_seconds": merge, "ranges": rec[::-1]}}))

    run_json("b_second", 1, 2, [(3.0, 5.0)], 0.25, 0.5)
    run_json("a_first", 0, 0, [(0.0, 1.0), (1.0, 2.5)], 0.125, 0.25)
    inputs, before, ahead = measured(tmp_path)
    assert inputs == [Input([1.0, 1.5], 0.375), Input([2.0], 0.75)]
    assert (before, ahead) == (1.5, False)


def test_measured_refuses_runs_it_cannot_replay(tmp_path):
    with pytest.raises(ValueError, match="no run.json"):
        measured(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "run.json").write_text(json.dumps({"checkpoint": {"reused": 0}}))
    with pytest.raises(ValueError, match="older version"):
        measured(tmp_path)


def test_the_suite_predicts_from_the_measured_wall_by_the_validated_formula(tmp_path):
    """track_predicted_speedup's numbers (bench_predict._measured, then _predicted) from a real CPU
    run: the measured wall with the replay's part swapped for N ranks and the spawn cost added,
    never the ratio of two replays (which drops model load and exit, and read 5-24 % high on
    the committed validation runs)."""
    from benchmarks import bench_predict
    from conftest import DATA
    from virnucpro.cli import main

    out = tmp_path / "out"
    assert main(["predict", str(DATA / "KK037166.fna"), "-l", "500", "--random-weights", "--preset", "tiny",
                 "--device", "cpu", "--no-progress", "--checkpoint-every", "8", "-o", str(out)]) == 0
    inputs, before, ahead = measured(out)
    one = replay(inputs, 1, before, ahead).wall
    assert len(inputs[0].ranges) > 2 and one > 0
    for wall in (one + 3.0, one + 0.5):  # as if model load and exit had taken 3 s, or 0.5 s
        run = json.loads(json.dumps(bench_predict._measured(str(out), wall)))  # as handed over, in JSON
        for spawn, cores in (((0.0, 0.0), 16), ((1.25, 0.5), 16), ((1.25, 0.5), 2)):
            got = bench_predict._predicted(run, spawn, cores)
            for n in (2, 4, 8):
                other = replay(inputs, n, before, ahead).wall
                extra = spawn[0] * max(1, n / cores) + spawn[1]
                assert got[str(n)] == pytest.approx(wall / (wall - one + other + extra), rel=1e-12)
                assert got[str(n)] < one / other  # the ratio of replays claims more
                assert got[str(n)] <= n
    assert bench_predict._predicted(bench_predict._measured(str(out), one + 3.0), (0, 0), 16) != \
        bench_predict._predicted(bench_predict._measured(str(out), one + 0.5), (0, 0), 16)
    assert bench_predict._measured(str(tmp_path / "nothing"), 10.0) is None


@pytest.mark.parametrize("ranks", [1, 2, 3, 8])
def test_the_named_terms_sum_to_the_prediction(ranks):
    heavy = [Input([1.0, 2.0, 0.5], 0.75), Input([3.0], 0.25), Input([0.5, 0.5], 1.0)]
    got = terms(heavy, ranks, 20.0, before=1.5, spawned=0.4)
    named = ("kept", "before_queue", "ranges", "uneven", "after_last_range", "spawn")
    assert sum(got[k] for k in named) == pytest.approx(got["predicted_wall"])
    assert got["predicted_wall"] == pytest.approx(predicted_wall(heavy, ranks, 20.0, before=1.5, spawned=0.4))
    assert got["ranges"] == pytest.approx(7.5 / ranks) and got["writes"] == 2.0 and got["count"] == 6
    assert got["kept"] == pytest.approx(20.0 - replay(heavy, 1, before=1.5).wall) and got["uneven"] >= -1e-9
