#!/usr/bin/env bash
# Every GPU measurement of issues 11 and 12 in one run, each step under its own time limit; JSON under $OUT.
#
# Prepare once, on a machine with PyPI:   bench/gpu_prepare.sh      (fills the git-ignored .gpu/)
# Run on the GPU machine (repo root), e.g. through the device tool with carry [".gpu"]:
#   bash bench/gpu_all.sh                    # OUT defaults to bench/results/gpu
# Smoke mode on a CPU-only machine (tiny configs, same scripts, seconds to minutes):
#   GPU_ALL_SMOKE=1 OUT=/tmp/gpu_smoke bash bench/gpu_all.sh
#
# Steps (limits in seconds, all within GPU_ALL_BUDGET, default 540; a step that fails or runs out of time is logged
# and the next one runs):
#   model_gpu        ViT / prefill / decode (CUDA graph + eager step) / whole query / slide, ours vs the released
#                    code (.gpu/release) in the same process, floors, peak memory   -> model_gpu.json
#   model_gpu_quant  int8 + int4 weight-only (torchao): bytes, ms/token, greedy agreement, logit error
#                                                                                  -> model_gpu_quant.json
#   batch_gpu        4 streams through answer_batch vs one by one, 8B-size config  -> batch_gpu.json
#   sam2_gpu         SAM2 hiera-tiny size at 1024 px, torch bf16 tracking; ONNX parts where ORT has CUDA
#                                                                                  -> sam2_gpu.json
#   model_gpu_int8_compile  int8 decode under torch.compile (slow to compile: last) -> model_gpu_int8_compile.json
# The device image has its own torch (2.11+cu130 when last seen) and an older transformers: the carried wheels
# (transformers 5.24, torchao 0.18) go to /tmp/site; torchao only joins the quant steps' path, so a torchao that
# does not fit that torch cannot break the others (transformers imports torchao whenever it is installed).
# Copy the JSON files back into bench/results/ and commit them with the README rows they fill.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
LOG="$OUT/gpu_all.log"
: > "$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .gpu/whl ] && [ -z "${GPU_ALL_SMOKE:-}" ]; then
    for w in .gpu/whl/*.whl; do
        case "$(basename "$w")" in
            torchao-*) dest=/tmp/site-ao ;;
            *) dest=/tmp/site ;;
        esac
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$dest" "$w" \
            >>"$LOG" 2>&1 || echo "install of $w failed" | tee -a "$LOG"
    done
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
AO_PATH="/tmp/site-ao:$PYTHONPATH"
RELEASE=()
[ -d .gpu/release/llavaonevision2 ] && RELEASE=(--release-code .gpu/release)

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 || true
    "$PY" -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda',
torch.version.cuda, 'transformers', transformers.__version__, 'gpu', torch.cuda.is_available())"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

BUDGET=${GPU_ALL_BUDGET:-540}                # whole run, seconds: the device tool allows 600 per command
step() {                                     # step NAME LIMIT_S [ENV=VALUE...] -- ARGS...
    local name=$1 limit=$2 envs=()
    shift 2
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    local t0=$SECONDS left=$((BUDGET - SECONDS - 10))
    if [ "$left" -lt 30 ]; then
        echo "=== $name skipped: ${left}s of the ${BUDGET}s budget left" | tee -a "$LOG"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
    env "${envs[@]}" timeout -k 10 "$limit" "$PY" "$@" >>"$LOG" 2>&1
    local rc=$?
    echo "=== $name rc=$rc in $((SECONDS - t0))s" | tee -a "$LOG"
}

if [ -n "${GPU_ALL_SMOKE:-}" ]; then         # CPU, tiny sizes: checks that every step runs end to end
    step model_gpu 600 -- bench/model_gpu.py --device cpu --tiny "${RELEASE[@]}" --sections base --new-tokens 8 \
        --eager-tokens 4 --repeats 1 --out model_gpu --results-dir "$OUT"
    step model_gpu_quant 300 -- bench/model_gpu.py --device cpu --tiny --sections quant --new-tokens 8 \
        --agree-tokens 8 --repeats 1 --out model_gpu_quant --results-dir "$OUT"
    step batch_gpu 300 -- bench/batch.py --device cpu --streams 2 --groups 2 --slides 2 --new-tokens 4 \
        --out batch_gpu --results-dir "$OUT"
    step sam2_gpu 300 -- bench/sam2_gpu.py --device cpu --threads 1 --size 256 --frames 4 --repeats 1 \
        --results-dir "$OUT"
else
    step model_gpu 180 -- bench/model_gpu.py "${RELEASE[@]}" --sections base --repeats 3 --out model_gpu \
        --results-dir "$OUT"
    step model_gpu_quant 120 PYTHONPATH="$AO_PATH" -- bench/model_gpu.py --sections quant --repeats 3 \
        --out model_gpu_quant --results-dir "$OUT"
    step batch_gpu 90 -- bench/batch.py --device cuda --size 8b --streams 4 --slides 4 --new-tokens 128 \
        --out batch_gpu --results-dir "$OUT"
    step sam2_gpu 60 -- bench/sam2_gpu.py --device cuda --results-dir "$OUT"
    step model_gpu_int8_compile 200 PYTHONPATH="$AO_PATH" -- bench/model_gpu.py --sections quant --precisions int8 \
        --int8-modes compile --repeats 3 --out model_gpu_int8_compile --results-dir "$OUT"
fi
grep -E "^(===|\||decode|slide|greedy|batched|tracked|goals|max \|logit|peak|bytes|int4|ONNX)" "$LOG" | tail -80
ls -la "$OUT"
