# Two-command set-up: `make demo` and `make test` create .venv and install what is missing.
PYTHON ?= python3.11
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
SLICER_CORE_SPEC ?= slicer-core>=5.13
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	@# Slicer's MRML libraries for tests/test_slicer_scene.py (no Qt); skipped where no wheel installs.
	$(PY) -m pip install --quiet "$(SLICER_CORE_SPEC)" || echo "slicer-core did not install: the Slicer scene tests will be skipped"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m fetalbiometry.demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_networks3d.py
	$(PY) benchmarks/bench_networks2d.py
	$(PY) benchmarks/study_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
