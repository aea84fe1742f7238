# rumpnet: two commands do everything on a new machine:
#   make demo   - the virtual IP router demo on in-process wires (no root needed)
#   make test   - the whole test suite (interop tests need root, /dev/net/tun, ip netns)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup sysdeps demo test lint typecheck docs bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev,fast]'
	touch $(STAMP)

# Host tools the interop tests use as real peers (ping, tcpdump, curl, iproute2).
sysdeps:
	sh scripts/install-system-deps.sh

setup: $(STAMP) sysdeps

demo: $(STAMP)
	$(BIN)/rump_router --demo

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

# ruff, and mypy in strict mode on rumpkern and rumpnet (pyproject.toml's [tool.mypy]).
lint: $(STAMP) typecheck
	$(BIN)/ruff check rumpkern rumpnet tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

# The API reference (HTML, from the docstrings) in build/docs/index.html.
docs: $(STAMP)
	$(BIN)/pdoc -o build/docs rumpkern rumpnet
	@echo "API reference: build/docs/index.html"

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: setup
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
