# Needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python inputs/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The soak: random seeded episodes until stopped, or N of them (make soak N=500); ROWS=MIN-MAX
# (default 100-3000); SEED=S replays one episode. A short fixed set also runs inside `make test`.
soak: $(STAMP)
	$(BIN)/python -m tests.soak $(if $(SEED),--seed $(SEED),--episodes $(or $(N),0)) --rows $(or $(ROWS),100-3000)

# docs/reference/cli.md is generated from the argparse parsers (tests/cli/test_cli_reference.py checks it)
docs: $(STAMP)
	$(BIN)/python scripts/gen_cli_reference.py

clean:
	rm -rf $(VENV) demo-out bench/out
