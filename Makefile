# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SPEC   ?= specs/digits_mlp.nn
# bytecode for the sources, as pip writes for an installed package: an editable install has none,
# and where PYTHONDONTWRITEBYTECODE is set every command would compile ~110 modules (~0.1 s)
COMPILE = $(BIN)/python -m compileall -q nndsl backends grammar > /dev/null

.PHONY: run test lint install clean docs bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	$(COMPILE)
	touch $(STAMP)

install: $(STAMP)

RUN_DIR ?= runs/$(basename $(notdir $(SPEC)))

run: $(STAMP)
	$(BIN)/nndsl check $(SPEC)
	$(BIN)/nndsl train $(SPEC) --run-dir $(RUN_DIR) --overwrite
	$(BIN)/nndsl predict $(RUN_DIR)/model.onnx --input $(RUN_DIR)/heldout_x.npy

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# Side-by-side ratios against hand-written PyTorch, Keras 3, Lightning and onnxruntime; prints
# one table and writes bench/results.json. BENCH_ARGS="--cases training --repeats 7".
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(COMPILE)
	$(BIN)/python -m bench $(BENCH_ARGS)

docs: $(STAMP)
	$(BIN)/python -m nndsl.docgen
	$(BIN)/python -m nndsl.editor.textmate

clean:
	rm -rf $(VENV) build *.egg-info
