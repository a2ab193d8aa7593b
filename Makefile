# `make test` and `make bench` work on a fresh machine: they create .venv when it is missing.
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# The CPU build of torch that lies on local disk; a GPU host keeps its own torch.
TORCH_SPEC ?= torch==2.13.0
BENCH_MACHINE ?= $(shell hostname)

.PHONY: venv test bench bench-smoke clean

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "$(TORCH_SPEC)"

$(VENV)/.installed: $(VPY) pyproject.toml
	$(VPY) -m pip install -q -e ".[test,bench]"
	touch $@

venv: $(VENV)/.installed

# Two pytest workers: many tests wait on CLI subprocesses, so two keep both cores of a CI host busy.
TEST_WORKERS ?= 2
test: venv
	$(VPY) -m pytest -q -n $(TEST_WORKERS)

# The whole suite on the current commit (tiny profile on a host without a GPU), the site, the bars.
# This machine's results go to $(BENCH_RESULTS) (ignored by git): results/ is the GPU hosts' history,
# written by scripts/run_history.py on a GPU host and committed; the site shows both, apart.
BENCH_RESULTS ?= .asv/results
bench: venv
	$(VPY) scripts/run_history.py HEAD --python $(abspath $(VPY)) --machine $(BENCH_MACHINE) \
		--results-dir $(BENCH_RESULTS) -- --show-stderr
	$(VPY) scripts/publish_site.py --local $(BENCH_RESULTS) --html .asv/html
	$(VPY) scripts/check_thresholds.py --results-dir $(BENCH_RESULTS) --machine $(BENCH_MACHINE) \
		--markdown .asv/html/thresholds.md
	@echo "site: $(abspath .asv/html)/index.html  (offline; open the file in Chromium or Firefox, no server or flags needed; or serve it: $(VPY) -m asv preview --html-dir .asv/html)"

# Every benchmark once, nothing saved (asv still writes benchmarks.json: into .asv/, not results/): for CI.
bench-smoke: venv
	$(VPY) -m asv machine --yes --machine ci-smoke >/dev/null
	$(VPY) -m asv --config $$($(VPY) scripts/asv_local_conf.py .asv/smoke-results) check -E existing:$(abspath $(VPY))
	$(VPY) -m asv --config $$($(VPY) scripts/asv_local_conf.py .asv/smoke-results) run -E existing:$(abspath $(VPY)) \
		--quick --dry-run --show-stderr --machine ci-smoke

clean:
	rm -rf $(VENV) .asv build *.egg-info
