# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-run
# Test processes (pytest-xdist); TEST_WORKERS=0 runs the suite in this process alone.
TEST_WORKERS ?= 2

.PHONY: venv test demo lint bench bench-gpu clean

$(BIN)/manga-pix2pix: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,beam]'
	touch $@

venv: $(BIN)/manga-pix2pix

test: venv
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) tests

demo: venv
	TF_CPP_MIN_LOG_LEVEL=2 DEMO_DIR=$(DEMO_DIR) PATH=$(BIN):$$PATH bash scripts/demo.sh

lint: venv
	$(BIN)/ruff check manga_pix2pix tfds_danbooru tests benchmarks

bench: venv
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/train_precision.py
	$(BIN)/python benchmarks/colorize.py
	$(BIN)/python benchmarks/regions.py
	$(BIN)/python benchmarks/evaluate_pairs.py
	$(BIN)/python benchmarks/serve.py

# One GPU, under 8 minutes: train step by precision and XLA, fed end to end, colorize.
bench-gpu: venv
	cd benchmarks && $(abspath $(BIN))/python gpu.py --output $(CURDIR)/bench-gpu.json

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info
