# Two commands from a fresh clone: `make demo` and `make test` (both idempotent).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo
DEMO_PATIENTS := 6
CORES ?= 2

.PHONY: setup demo test bench lint clean-demo

$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(BIN)/.installed

$(DEMO)/config.yaml: | $(BIN)/.installed
	$(BIN)/serialct synth $(DEMO) --patients $(DEMO_PATIENTS) --seed 1

demo: setup $(DEMO)/config.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile $(DEMO)/config.yaml
	@echo
	@echo "report:  $(DEMO)/results/report.html"
	@echo "tables:  $(DEMO)/results/tables/scans.tsv  $(DEMO)/results/tables/patients.tsv"
	@echo "stats:   $(DEMO)/results/stats/"
	@echo "truth:   $(DEMO)/truth.tsv"

test: setup
	$(BIN)/python -m pytest -q

# every stage at 512x512x300 and on the real samples (~15 min on 2 cores); writes BENCHMARKS.md
bench: setup
	$(BIN)/python benchmarks/run.py --profile auto --out benchmarks/results/latest.json \
		--compare benchmarks/results/baseline.json

lint: setup
	$(BIN)/ruff check src tests workflow/scripts benchmarks
	$(BIN)/ruff format --check src tests workflow/scripts benchmarks
	$(BIN)/snakemake --lint --configfile config/config.yaml

clean-demo:
	rm -rf $(DEMO)
