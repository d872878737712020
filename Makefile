# Set-up and the two jobs the README opens with. `make run` and `make test` work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: install run test browser-deps

$(BIN)/assistant: pyproject.toml
	$(PY) -m venv $(VENV)
	# torch is pinned to the CPU build on this machine's disk; pip would otherwise pull CUDA.
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/assistant

install: $(BIN)/assistant

run: install
	$(BIN)/assistant run

# The browser test drives Debian's Chromium (Playwright does not download one here).
browser-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: install browser-deps
	$(BIN)/pytest -q
