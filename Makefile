# `make test` and `make bench` work on a fresh machine: they create .venv when it is missing.
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# torch pinned to the CPU build that lies on local disk; a GPU host keeps its own torch.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv test bench clean

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "$(TORCH_SPEC)"

$(VENV)/.installed: $(VPY) pyproject.toml
	$(VPY) -m pip install -q -e ".[test,bench]"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(VPY) -m pytest -q

clean:
	rm -rf $(VENV) .asv build *.egg-info
