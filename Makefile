# Two commands do all the set-up on a fresh machine:
#   make quickstart   create .venv, install everything, run recipes/quickstart.yaml offline on CPU
#   make test         create or reuse .venv, lint (ruff, mypy) and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On this project's build machines torch==2.13.0 resolves to a local CPU wheel; elsewhere pip picks
# the platform's build. Pinning it first keeps pip from pulling a CUDA stack for the CPU-only jobs.
TORCH ?= torch==2.13.0

.PHONY: venv quickstart test lint clean parity

# constraints.txt pins the versions the suite last passed with; pyproject.toml keeps ranges.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

quickstart: venv
	$(VENV)/bin/stylecraft run recipes/quickstart.yaml

test: venv lint
	$(PY) -m pytest -q

# Parity against the reference tools: FAD tools (eval/.cache/envs/fad-ref), kadtk 1.1.0
# (eval/.cache/envs/kad-ref), Spleeter 2.4.2 (eval/.cache/envs/spleeter, needs ffmpeg) and
# audiocraft 1.3.0 (eval/.cache/envs/audiocraft);
# each environment is built on first use from the package index.
parity: venv
	$(PY) -m pytest -q -m reference tests/parity
	$(PY) eval/parity/parity_kad.py
	$(PY) eval/parity/spleeter_parity.py --models 2stems 4stems 5stems
	$(PY) eval/parity/audiocraft_parity.py
	$(VENV)/bin/stylecraft fetch musicnn
	$(PY) eval/parity/musicnn_parity.py --wheel checkpoints/hub/musicnn/musicnn-0.1.0-py3-none-any.whl

lint: venv
	$(VENV)/bin/ruff check src tests eval
	$(VENV)/bin/mypy

clean:
	rm -rf runs .pytest_cache
