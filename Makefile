# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# torch is installed on its own (not hash-locked): the CPU build is a local file on
# our machines, while PyPI serves a different (CUDA) build with other hashes.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install run test lock bench clean-var

install: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25"
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.txt
	@touch $(STAMP)

run: install
	$(BIN)/python -m supportdesk.launcher

test: install
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered -q $(PYTEST_ARGS)

lock:
	$(BIN)/python -m pip install --quiet pip-tools==7.6.2  # 7.5 breaks on pip 26 (allow_all_prereleases)
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --unsafe-package torch \
		--output-file requirements.txt requirements.in

bench: install
	$(BIN)/python bench/ingest.py --json var/bench-ingest.json
	$(BIN)/python bench/search.py --json var/bench-search.json
