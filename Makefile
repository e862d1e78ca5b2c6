# One-command set-up: `make demo` and `make test` both create .venv when missing.
# torch==2.13.0 is installed first so that pip never resolves a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed
RUN_DIR ?= runs/demo-rbm-digits

.PHONY: setup demo test test-fast lint check mutation mutation-changed bench bench-quick docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ebmlab train rbm --dataset digits --n-hidden 100 --epochs 40 --batch-size 20 \
		--lr 0.05 --cd-k 1 --seed 0 --out $(RUN_DIR) --overwrite
	$(BIN)/ebmlab eval $(RUN_DIR)
	@echo "Run folder: $(RUN_DIR) (figures in $(RUN_DIR)/figures)"

# The whole suite, slow statistical tests included (about two minutes here). Two pytest
# workers on two cores, one thread each: more OpenMP threads only contend for the cores.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2

# The quick subset for the edit-test loop.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Before every push: lint, formatting, CLI docs current, the fast tests, and the mutants of
# what changed since the last mutation run (skipped with a note before the first one).
check: lint
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python scripts/gen_cli_docs.py --check
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 -m "not slow"
	$(MAKE) --no-print-directory mutation-changed

MUTATION_STAMP := $(VENV)/.mutation-installed
$(MUTATION_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[mutation]"
	touch $(MUTATION_STAMP)

# Mutation testing of training/, samplers/, estimators/ and models/ ([tool.mutmut] in
# pyproject.toml), then docs/mutation.md. mutmut keeps its results in mutants/: a later run
# re-tests only the functions whose code changed, so the first run is the long one.
mutation: $(MUTATION_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2
	$(BIN)/python scripts/mutation_report.py --write docs/mutation.md

mutation-changed: $(MUTATION_STAMP)
	@if [ -d mutants ]; then OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2 && \
		$(BIN)/python scripts/mutation_report.py --write docs/mutation.md; \
	else echo "mutation: no earlier run in mutants/; run 'make mutation' once (long)"; fi

# The peers (scikit-learn, learnergy, torchebm, BlackJAX) are measured in the same run.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(BIN)/python benchmarks/run_all.py --write

bench-quick: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(BIN)/python benchmarks/run_all.py --quick

$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[docs]"
	touch $(DOCS_STAMP)

# Builds offline into site/ (open site/index.html); fails on stale CLI docs, broken links or pages missing from the nav.
docs: $(DOCS_STAMP)
	$(BIN)/python scripts/gen_cli_docs.py --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site .pytest_cache
