# Set-up on a fresh machine: a local .venv with the CPU build of torch installed first,
# so pip never resolves a CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-slow lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[all,test]"
	# RecBole, the reference of the ranking-metric parity tests and the holder of MovieLens-100k (mblfe's
	# real-data check): without its heavy extras (ray, ...), which those tests never import
	$(BIN)/pip install -q "colorlog==4.7.2" "colorama==0.4.4" texttable tabulate tensorboard \
	  && $(BIN)/pip install -q --no-deps "recbole==1.2.1" \
	  || echo "recbole did not install: its parity and MovieLens tests will skip"

demo: install
	$(BIN)/affectkit bench --quick --out bench-results

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check src tests benchmarks examples

clean:
	rm -rf $(VENV) bench-results runs
