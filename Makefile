# livesense — all set-up happens here. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Exact pin: the CPU build. A looser torch spec pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.livesense-installed
DEMO_OUT ?= demo_out
SAMPLE := livesense/assets/sample.mp4

.PHONY: help venv sysdeps demo test fuzz bench lint format clean sample

help:
	@echo "make demo    set up and replay the bundled sample clip through the pipeline -> $(DEMO_OUT)/"
	@echo "make test    set up (incl. system packages when root) and run the test suite"
	@echo "make fuzz    a long protocol fuzz run: make fuzz N=100000 SEED=7 (make test runs 2400)"
	@echo "make bench   run every benchmark in benchmarks/ (one JSON line each)"
	@echo "make lint    ruff check + format check"
	@echo "make sample  regenerate $(SAMPLE) (needs espeak-ng)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

sysdeps:
	@sh scripts/sysdeps.sh

demo: $(STAMP)
	$(BIN)/livesense replay $(SAMPLE) --out $(DEMO_OUT) --force --fast --orbit 4 --plot
	@echo "demo outputs in $(DEMO_OUT)/: output.mp4 (video + binaural audio, use headphones), binaural.wav, binaural.png, stats.json"

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q

N    ?= 100000
SEED ?= 14
fuzz: $(STAMP)
	LIVESENSE_FUZZ_N=$(N) LIVESENSE_FUZZ_SEED=$(SEED) $(BIN)/python -m pytest -q tests/reliability/test_fuzz.py

bench: $(STAMP)
	@for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check livesense tests benchmarks scripts
	$(BIN)/ruff format --check livesense tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format livesense tests benchmarks scripts
	$(BIN)/ruff check --fix livesense tests benchmarks scripts

sample: $(STAMP)
	$(BIN)/python scripts/make_sample_clip.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache .hypothesis
