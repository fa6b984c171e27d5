# tufnotary: the two commands of the README, and a few helpers.
#   make run    start signer + server on the embedded default (SQLite) on loopback
#   make test   install everything the suite needs and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STATE ?= .state
PORT ?= 4443
SIGNER_PORT ?= 7899

.PHONY: run test venv system-deps interop-deps proto clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# System packages the suite runs for real (PostgreSQL server binaries); installed when missing.
system-deps:
	@bash tests/system-deps.sh

# tuf-js, an independent TUF client the interoperability tests run (lockfile in tests/e2e/tufjs).
TUFJS := tests/e2e/tufjs
interop-deps:
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	@[ -d $(TUFJS)/node_modules/tuf-js ] || npm ci --prefix $(TUFJS) --silent --no-audit --no-fund

proto: venv
	@bash proto/gen.sh $(PY)

run: venv
	@$(VENV)/bin/tufnotary-server dev --state-dir $(STATE) --port $(PORT) --signer-port $(SIGNER_PORT)

test: venv system-deps interop-deps
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc = 5 ]; then echo "pytest collected no tests (exit 5)"; rc=0; fi; exit $$rc

clean:
	rm -rf $(VENV) $(STATE) .pytest_cache

# Benchmarks of issue 8 (docs/performance.md), not part of `make test`: our stack on a throwaway PostgreSQL,
# and Debian's notary 0.7.0 beside it with ARGS='--compare notary'. Other options: --quick, --runs N, --json FILE,
# --profile DIR (python -m tests.bench.run --help). Installs wrk and notary with apt, py-spy with the bench extra.
.PHONY: bench
$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

bench: venv system-deps $(VENV)/.bench-installed
	@$(PY) -m tests.bench.run $(ARGS)
