#!/usr/bin/env bash
# Prepare .gpu/ (git-ignored) for bench/gpu_all.sh on a GPU machine that has no network. Run here, with PyPI:
#   bench/gpu_prepare.sh [RELEASE]
# RELEASE: a clone (or bare mirror) of github.com/EvolvingLMMs-Lab/LLaVA-OneVision-2, or a folder holding its
# llavaonevision2/ package; default: $OV2_RELEASE_REPO, else the fetched mirror under /work/.mirror.
# It writes
#   .gpu/release/llavaonevision2/   the released modeling code (never committed here), the benchmark's baseline
#   .gpu/whl/*.whl                  pure-Python wheels the GPU image lacks at our versions (transformers 5.24,
#                                   torchao 0.18), for CPython 3.12 on x86-64 (the device image's Python)
# Then, on the device: carry .gpu and run `bash bench/gpu_all.sh` (see that script).
set -euo pipefail
cd "$(dirname "$0")/.."
release=${1:-${OV2_RELEASE_REPO:-/work/.mirror/EvolvingLMMs-Lab+LLaVA-OneVision-2/repo}}
PY=${PYTHON:-.venv/bin/python}
mkdir -p .gpu/release .gpu/whl
rm -rf .gpu/release/llavaonevision2
if [ -d "$release/llavaonevision2" ]; then
    cp -r "$release/llavaonevision2" .gpu/release/
elif [ -d "$release/transformers_impl/llavaonevision2" ]; then
    cp -r "$release/transformers_impl/llavaonevision2" .gpu/release/
elif git --git-dir="$release" rev-parse --verify HEAD >/dev/null 2>&1; then
    git --git-dir="$release" archive HEAD transformers_impl/llavaonevision2 | tar -x -C .gpu/release \
        --strip-components=1
    echo "release code from $release at $(git --git-dir="$release" rev-parse --short HEAD)" > .gpu/release/SOURCE
else
    echo "no released llavaonevision2/ package under $release" >&2
    exit 1
fi
rm -f .gpu/whl/*.whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .gpu/whl transformers==5.24.0 torchao==0.18.0
ls -la .gpu/release/llavaonevision2 .gpu/whl
du -sh .gpu
