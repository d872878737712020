# Set-up and the two jobs the README opens with. `make run` and `make test` work on a fresh clone.
#
#   make install             # .venv with exactly the versions in requirements.lock (what CI installs)
#   make lock                # regenerate requirements.lock from pyproject.toml, keeping the pins that still fit
#   make lock UPGRADE=1      # move every pin to the newest release pyproject.toml allows
#   make check-latest        # not in CI: the newest releases, unpinned, in a scratch venv, against the fast tests
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := build/pip-tools
LATEST := build/latest-venv
export HF_HUB_OFFLINE := 1

.PHONY: install lock check-latest run test browser-deps

# The lock is a constraints file: pyproject.toml says what we need, the lock which version of it and of everything
# below it. torch is pinned to the CPU build on this machine's disk; pip would otherwise pull CUDA.
$(BIN)/assistant: pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $(BIN)/assistant

install: $(BIN)/assistant

$(TOOLS)/bin/pip-compile:
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q 'pip-tools>=7.4'

# For this Python (3.11 in CI) and the CPU torch; the index and find-links stay pip's own settings.
lock: $(TOOLS)/bin/pip-compile
	CUSTOM_COMPILE_COMMAND="make lock" $(TOOLS)/bin/pip-compile -q --extra dev --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) --output-file requirements.lock pyproject.toml

# Drift is seen here before a user meets it: what moved past the lock, then the tests without the real model or browser.
check-latest:
	rm -rf $(LATEST)
	$(PY) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --upgrade pip
	$(LATEST)/bin/pip install -q -e '.[dev]'
	@echo "newer than requirements.lock:"
	@$(LATEST)/bin/pip freeze --exclude-editable | tr 'A-Z_' 'a-z-' | grep -vxFf requirements.lock || echo "  nothing"
	$(LATEST)/bin/python -m pytest -q -m "not e2e and not browser"

run: install
	$(BIN)/assistant run

# The browser test drives Debian's Chromium (Playwright does not download one here).
browser-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Two workers: most tests are single-threaded Python around a tiny model, and one process kept 1.15 of
# CI's 2 cores busy (25 min alone, 16.6 min as two workers on a 2-core AVX2 EPYC).
test: install browser-deps
	$(BIN)/pytest -q -n 2
