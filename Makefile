# Quick start: `make demo` (main job) and `make test` (the suite). Both create or reuse .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test bench bench-tokenizer train-toy clean

venv: $(STAMP)

# torch first, pinned to the CPU wheel, so no later requirement pulls a CUDA build (and no vision add-on package).
$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ov2-ros demo --out demo_out

# The shipped toy models, trained from scratch on synthetic scenes (~1 h on 2 CPU cores; resumable: rerun to continue).
train-toy: $(STAMP)
	nice -n 5 $(BIN)/python -m ov2_ros.train.toy --out build/ov2-toy --threads 2 --publish models/ov2-toy
	nice -n 5 $(BIN)/python -m ov2_ros.train.sam2 --out build/sam2-toy
	nice -n 5 $(BIN)/python -m ov2_ros.train.sam2 --out build/sam2-toy-b --steps 300 --clip-frames 8 --lr 1e-3 \
		--init build/sam2-toy/model --publish models/sam2-toy

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench

# Benchmark extras live in their own venv: the official offline tool (codec-video-prep) pins numpy<2. It shells out
# to ffmpeg/ffprobe, installed from Debian when missing; without them the comparison is recorded as skipped.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): requirements-bench.txt
	test -x $(BENCH_VENV)/bin/python || $(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q -r requirements-bench.txt
	command -v ffprobe >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg) \
		|| echo "bench: no ffmpeg/ffprobe, cv-preinfer comparison will be skipped"
	touch $(BENCH_STAMP)

bench-tokenizer: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python bench/tokenizer.py

clean:
	rm -rf $(VENV) demo_out build *.egg-info
