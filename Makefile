# The README's two commands: `make demo` and `make test`. Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; any other spec may pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# The suite runs in two pytest-xdist workers, one per core of CI's 2-core machine, each test file in one worker (its
# module-scoped set-up built once); tests/conftest.py gives each worker one compute thread. A crashed worker ends the
# run (--max-worker-restart 0): with loadfile, xdist 3.8 can hang after replacing one (pytest-xdist issue 1378).
PYTEST_PARALLEL ?= -n 2 --dist loadfile --max-worker-restart 0

.PHONY: install demo test test-fast test-min quality style clean help-snapshot

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(BIN)/ecg-pma demo

test: install
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

test-fast: install
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not slow"

# The declared floors are real: a separate environment with every dependency at its lowest allowed version
# (.ci/floors.py turns `>=X` into `==X`; torch is TORCH_SPEC, the only CPU wheel here), then the fast tests.
VENV_MIN ?= .venv-min
test-min: $(VENV_MIN)/.installed
	$(VENV_MIN)/bin/python -m pytest $(PYTEST_PARALLEL) -m "not slow"

$(VENV_MIN)/.installed: pyproject.toml .ci/floors.py
	$(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_MIN)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(VENV_MIN)/bin/python .ci/floors.py dev > $(VENV_MIN)/floors.txt
	$(VENV_MIN)/bin/python -m pip install --quiet --prefer-binary -c $(VENV_MIN)/floors.txt -e ".[dev]"
	touch $@

# Lint and format, as transformers does: `make quality` checks (CI runs it), `make style` fixes.
quality: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `ecg-pma finetune --help` is printed from this snapshot of its parser (no torch import); write it again after
# changing the finetune options or upgrading transformers (tests/test_command_help.py says when).
help-snapshot: install
	$(BIN)/python -c "from ecg_pma.commands.finetune import write_help_snapshot; write_help_snapshot()"

clean:
	rm -rf $(VENV) $(VENV_MIN) outputs .pytest_cache
