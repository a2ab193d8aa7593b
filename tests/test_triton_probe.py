"""scripts/triton_probe.py --dry-run: its checks, sweep and per-process runs, on the CPU in Triton's interpreter."""
import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import ROOT



@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_dry_run_fills_every_section(tmp_path):
    out = tmp_path / "probe" / "result.json"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "triton_probe.py"), "--dry-run", "--out", str(out)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["gpu"] == "none (dry run)" and r["preset"] == "tiny" and r["triton"]
    c = r["check"]
    assert c["attention_float32"]["triton_max_abs_error"] < 1e-5 and c["attention_float32"]["tokens"] > 100
    assert c["attention_bfloat16"]["triton_max_abs_error"] < 5e-2
    assert c["add_norm_float32_max_abs_error"] < 1e-5 and c["geglu_float32_max_abs_error"] < 1e-5
    sweep = r["sweep"]
    assert sweep["best"] in sweep["ms"] and all(isinstance(v, float) for v in sweep["ms"].values())
    assert sorted(r["runs"]) == ["flex_cold", "flex_warm", "triton_cold", "triton_warm", "triton_warm_best_tiles"]
    for key, run in r["runs"].items():
        assert "error" not in run, run.get("error")
        assert run["backend"] == key.split("_")[0]
        assert 0 < run["seconds_imports"] <= run["seconds_loaded"] <= run["seconds_to_first_batch"]
        assert run["first_batch"]["orfs"] == 1 and run["second_batch"]["orfs"] == 2
        assert run["stage"]["items"] == 4 and run["stage"]["tokens_per_second"] > 0
        assert run["stage"]["dynamo_graphs_in_clock"] == 0
    assert all(r["runs"][k]["dynamo_graphs_total"] == 0 for k in ("triton_cold", "triton_warm"))
    assert r["runs"]["triton_warm_best_tiles"]["tiles"] == sweep["best_tiles"]
    # On the CPU "flex" is the padded SDPA path: two implementations, one model.
    assert r["first_batch_flex_vs_triton"]["max_abs_diff"] < 1e-5
    assert "triton_warm" in p.stdout and "sweep (ms per layer)" in p.stdout
