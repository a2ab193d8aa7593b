"""scripts/noise_table.py: between-run and within-run noise of repeated runs, and the thresholds it suggests."""
import json

import pytest

import noise_table as nt
from conftest import ROOT
from suite.results import method_of
from suite.thresholds import regression_threshold, tomllib
from test_compare_commits import C1, C2, ESM2, MACHINE, THRESHOLDS, THROUGHPUT, write_run


def noise_runs(tmp_path, medians, spread=0.5):
    """One results folder per median: track_throughput(esm2, 1) samples median-0.5, median, median+0.5."""
    dirs = []
    for i, m in enumerate(medians):
        dirs.append(tmp_path / f"run{i}")
        write_run(dirs[-1], C1, seed=i, spread=0.0005, exact={ESM2: [m - spread, m, m + spread]})
    return [str(d) for d in dirs]


def test_noise_table_between_run_cv(tmp_path, capsys):
    dirs = noise_runs(tmp_path, [100.0, 102.0, 98.0])
    out = tmp_path / "noise.json"
    assert nt.main(["--machine", MACHINE, "--commit", C1, *dirs, "--json", str(out), "--toml-snippet"]) == 0
    rows = {(method_of(r["benchmark"]), r["params"]): r for r in json.loads(out.read_text())["rows"]}
    esm2 = rows[("track_throughput", "stage='esm2', n_gpus=1")]
    assert esm2["medians"] == [100.0, 102.0, 98.0] and esm2["n_runs"] == 3 and esm2["n_samples"] == 9
    assert esm2["between_cv_percent"] == pytest.approx(2.0)  # sample std 2 over mean 100
    assert esm2["within_cv_percent"] == pytest.approx((0.5 / 100 + 0.5 / 102 + 0.5 / 98) / 3 * 100)
    assert esm2["suggested_threshold"] == 0.08  # 4 x 2.0%
    assert rows[("track_mfu", "stage='esm2'")]["suggested_threshold"] == 0.01  # the floor
    # the snippet pastes into thresholds.toml and compare_commits reads it back
    snippet = capsys.readouterr().out.split("# from noise_table.py")[1].split("\n", 1)[1]
    cfg = tomllib.loads(THRESHOLDS.split("[regression.max_fraction_by_benchmark]")[0] + snippet)
    assert regression_threshold(THROUGHPUT, {"stage": "esm2", "n_gpus": 1}, cfg) == 0.08
    assert regression_threshold(THROUGHPUT, {"stage": "translate", "n_gpus": 1}, cfg) == 0.01
    assert cfg["regression"]["max_fraction_by_benchmark"]["time_predict"] == 0.01


@pytest.mark.parametrize("between, within, expected", [
    (0.2, 0.1, 0.01), (0.3, None, 0.015), (None, 0.8, 0.035), (2.0, 0.5, 0.08), (None, None, None)])
def test_suggested_threshold_is_four_cvs_in_half_percent_steps_above_one_percent(between, within, expected):
    assert nt.suggest(between, within) == expected


def test_noise_table_one_folder_uses_the_within_run_noise(tmp_path):
    dirs = noise_runs(tmp_path, [100.0], spread=10.0)  # samples 90, 100, 110: CV 10%
    out = tmp_path / "noise.json"
    assert nt.main(["--machine", MACHINE, "--commit", C1[:8], *dirs, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    (esm2,) = [r for r in report["rows"] if r["params"] == "stage='esm2', n_gpus=1"]
    assert esm2["between_cv_percent"] is None and esm2["within_cv_percent"] == pytest.approx(10.0)
    assert esm2["suggested_threshold"] == 0.40
    assert any("between-run CV unknown" in n for n in report["notes"])
    assert nt.main(["--machine", MACHINE, "--commit", C2, *dirs]) == 2


def test_the_committed_thresholds_are_the_committed_noise_tables_suggestions():
    """[regression.max_fraction_by_benchmark] is what noise_table.py suggested from the H100's five
    runs (docs/perf/suite_trust_h100-x1/), metric by metric, and the lookup finds each one."""
    cfg = tomllib.loads((ROOT / "benchmarks" / "thresholds.toml").read_text())
    table = cfg["regression"]["max_fraction_by_benchmark"]
    noise = json.loads((ROOT / "docs/perf/suite_trust_h100-x1/noise_5bb6dd9_h100-x1.json").read_text())
    expected = nt.toml_snippet(noise["rows"]).splitlines()[2:]
    not_compared = set(cfg["regression"]["not_compared"])
    expected = {k.strip('"'): float(v) for k, v in (line.split(" = ") for line in expected)
                if method_of(k.strip('"')) not in not_compared}
    assert table == expected
    assert regression_threshold(THROUGHPUT, {"stage": "esm2", "n_gpus": 1}, cfg) == 0.02
    assert regression_threshold(THROUGHPUT, {"stage": "esm2", "n_gpus": 2}, cfg) == cfg["regression"]["max_fraction"]
