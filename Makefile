# Set-up and the two everyday commands. `make run` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# All Ray traffic on loopback, W&B offline unless you configured a key.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0

.PHONY: run test test-fast lint install clean

$(BIN)/xdrl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# torch first, pinned: the CPU wheel here; see the README for a CUDA build.
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

install: $(BIN)/xdrl

# A small sweep on the embedded default: local Ray, CPU, W&B offline, SQLite Optuna study.
SWEEP ?= experiment=cartpole_ppo search=optuna search.num_samples=4 collector.total_frames=20480 hooks.eval.interval_frames=4096

run: $(BIN)/xdrl
	$(BIN)/xdrl tune $(SWEEP)

# Two pytest workers, each taking whole test files (module fixtures such as the namespace cluster
# are set up once): most tests wait on processes starting (Ray, xdrl, W&B), so two at a time
# finish the suite in about 12 minutes instead of 17-18 on 2 cores.
PYTEST_WORKERS ?= -n 2 --dist loadfile

test: $(BIN)/xdrl
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS)

# Everything but real clusters, killed-and-resumed processes and full sweeps (marked slow): a few minutes.
test-fast: $(BIN)/xdrl
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS) -m "not slow"

lint: $(BIN)/xdrl
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf runs .pytest_cache
