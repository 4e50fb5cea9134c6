# Two commands do all the set-up on a fresh machine:
#   make quickstart   create .venv, install everything, run recipes/quickstart.yaml offline on CPU
#   make test         create or reuse .venv, lint (ruff, mypy) and run the test suite
# CI (.ci/run) also runs `make smoke-newest`: a smoke set on the newest releases, in .venv-newest.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On this project's build machines torch==2.13.0 resolves to a local CPU wheel; elsewhere pip picks
# the platform's build. Pinning it first keeps pip from pulling a CUDA stack for the CPU-only jobs.
TORCH ?= torch==2.13.0

.PHONY: venv quickstart test lint clean parity smoke-newest

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

# The newest releases pyproject.toml allows, without constraints.txt, in a venv of their own: a
# smoke set there (quickstart, kill and resume, CLI errors, the model path) shows whether a new
# torch, transformers, accelerate, peft, numpy or librosa breaks stylecraft before the pins move.
NEWEST_VENV ?= .venv-newest
NEWEST_PY := $(NEWEST_VENV)/bin/python
SMOKE_STEPS ?= 200
SMOKE_TESTS := tests/train/test_loop.py::test_sigkill_and_resume_gives_identical_losses \
	tests/models tests/train/test_text_conditioner.py \
	tests/test_cli_entry_point.py tests/test_pipeline.py::test_user_errors_are_one_line \
	tests/test_bad_input.py::test_bad_config_values_are_one_line tests/test_bad_input.py::test_missing_model_is_one_line \
	tests/test_bad_input.py::test_command_line_mistakes_are_usage_errors_without_traceback \
	tests/separate/test_separate_cli.py::test_cli_user_errors_are_one_line

$(NEWEST_VENV)/.installed: pyproject.toml
	rm -rf $(NEWEST_VENV)
	$(PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_PY) -m pip install --quiet --upgrade pip
	$(NEWEST_PY) -m pip install --quiet "$(TORCH)"
	$(NEWEST_PY) -m pip install --quiet -e ".[dev]"
	touch $@

smoke-newest: $(NEWEST_VENV)/.installed
	@$(NEWEST_PY) -c 'from importlib.metadata import version as v; \
	print("newest:", ", ".join(p + " " + v(p) for p in ("torch", "transformers", "accelerate", "peft", "numpy", "librosa")))'
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(NEWEST_VENV)/bin/stylecraft run recipes/quickstart.yaml --run-dir "$$tmp/quickstart" train.max_steps=$(SMOKE_STEPS)
	$(NEWEST_PY) -m pytest -q $(SMOKE_TESTS)

lint: venv
	$(VENV)/bin/ruff check src tests eval
	$(VENV)/bin/mypy

clean:
	rm -rf runs .pytest_cache
