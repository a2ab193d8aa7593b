"""scripts/gpu_report.py --dry-run: every section runs on the CPU at tiny size and lands in the JSON."""
import json
import subprocess
import sys
from conftest import ROOT



def test_dry_run_fills_every_section(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_report.py"), "--dry-run", "--agreement-orfs", "40",
                        "--e2e-seconds", "0", "--reference-bp", "20000", "--out", str(tmp_path),
                        "--user-metagenome-bp", "6000", "--user-reads", "30", "--layout-bp", "30000",
                        "--esm-layer-variant"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads((tmp_path / "gpu_report.json").read_text())
    assert r["gpu"] == "none (dry run)" and r["genome_orfs"] > 0
    for stage in ("esm2", "dnabert", "esm2_layer_fused"):
        assert r[stage]["tokens_per_second"] > 0
    assert 0 < r["esm2_layer_fused"]["embedding_max_abs_diff"] < 1e-2  # another GELU, the same model
    for m in ("dnabert", "esm2"):
        a = r["agreement"][m]
        # fp32 at the reference engine's 2,048-token batches and at the CPU budget: other batches,
        # same numbers up to rounding; and one batch embedded twice must be bit-identical.
        assert a["orfs"] > 0 and a["min_cosine"] > 0.99999
        assert a["orfs_not_bit_identical_when_repeated"] == 0 and a["max_abs_diff_when_repeated"] == 0.0
    assert r["agreement"]["chunk_verdict_agreement"] == 1.0
    resume = r["resume"]
    assert resume["return_codes"] == {"uninterrupted": 0, "killed": -9, "resumed": 0}
    assert resume["reused_ranges"] == 2 and resume["files_differing"] == [] and resume["feature_rows_differing"] == 0
    assert resume["files_compared"] == 8  # four result files and four in intermediate/
    assert r["e2e_genome"]["orfs_per_second"] > 0 and r["e2e_reads"]["orfs_per_second"] > 0
    assert r["reference"]["speedup"] > 0
    assert all(row in p.stdout for row in ("same batch twice", "resume after SIGKILL", "speedup vs reference",
                                           "genome, CLI", "10 reads --gpus 1, empty caches", "metagenome-like, CLI"))
    u = r["user"]
    for key in ("few_reads_warm", "few_reads_warm_gpus1", "few_reads_fresh_caches_gpus1", "genome_cli",
                "genome_cli_reference", "metagenome_cli", "reads_cli"):
        assert u[key]["rc"] == 0 and u[key]["wall_seconds"] > 0, u[key]
    # the milestones of a spawned run, each measured, in order, and adding up to about the wall time
    steps = u["few_reads_warm_gpus1"]["milestones"]
    assert all(v >= 0 for v in steps.values()) and "spawning the worker" in steps and "CUDA context" in steps, steps
    assert 0.5 * u["few_reads_warm_gpus1"]["wall_seconds"] < sum(steps.values()) < 1.1 * u["few_reads_warm_gpus1"]["wall_seconds"]
    assert 0 < u["metagenome_cli"]["fraction_of_esm_alone"] and u["genome_cli_speedup"] > 0
    layouts = r["layouts"]  # three layouts of a held-out input, the same bytes (on the CPU, tested)
    assert layouts["errors"] == {} and len(layouts["sha256"]) == 3 and layouts["orfs"] > 0
    assert layouts["identical"] and "the same bytes in 3 layouts" in p.stdout


def test_milestones_read_proc_clock_jitter_as_zero_and_keep_real_disorder():
    from report import user_view

    events = [(1, "process_start", 99.99), (1, "inputs_read", 101.0), (1, "torch_imported", 102.0),
              (2, "worker_start", 101.99), (2, "process_group", 103.0), (1, "exit", 104.0)]
    steps = user_view.milestones(events, launched=100.0, ended=104.5)
    assert steps["launch to process start"] == 0.0  # 10 ms before the launch: the /proc clock's resolution
    assert steps["spawning the worker"] == 0.0
    assert steps["exit call to process end"] == 0.5
    late = user_view.milestones([(1, "process_start", 99.5), (1, "exit", 101.0)], launched=100.0, ended=101.0)
    assert late["launch to process start"] == -0.5  # beyond the clock's resolution: a real error, shown
