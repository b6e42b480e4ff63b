#!/usr/bin/env bash
# One prepared check of IBCLN's CUDA paths, at most 8 minutes on one GPU (each step has its own time limit):
#   1 environment (torch, CUDA, cuDNN, GPU, memory, bf16)   2 tests/test_cuda.py (pytest -m cuda)
#   3 training smoke: fp32, --amp bf16, --amp fp16, --channels_last, --compile, then --continue_train
#   4 torchrun (nccl; 2 processes too if 2 GPUs)            5 test.py on a 2048x2048 image, whole and --tile
#   6 scripts/benchmark.py --device cuda --variants all     7 a timed quality run (--minutes M, default 4)
#
#   bash scripts/gpu_check.sh [--photos DIR] [--benchmarks DIR] [--minutes M] [--steps 1,2,...]
#   bash scripts/gpu_check.sh --cpu-dry-run      # every step on the CPU at tiny sizes, < 3 minutes
#
# Writes summary.json (per step: status, seconds, details) and gpu_check.log under $OUT when set, else
# results/gpu_check/; exits 1 if any step failed. Needs no network. Interpreter: $PYTHON, else .venv/bin/python
# when present, else python3.
#
# On a GPU machine without the repository's venv (torch, torchvision, scikit-image, pillow, tqdm, numpy
# installed, but no dominate, visdom or pytest), prepare on a machine with network, inside the checkout
# (both folders are git-ignored; photos are for research use only and are never committed):
#   python3 -m pip download -d .whl dominate pytest      # test.py's result pages, step 2's tests
#   mkdir -p gpu_inputs && cp -r ../shared/benchmarks gpu_inputs/ && cp -r ../shared/photos/bsds500/train gpu_inputs/photos
# then, on the GPU machine (wheels found in .whl/ are installed into /tmp/ibcln_site first, offline):
#   bash scripts/gpu_check.sh --benchmarks gpu_inputs/benchmarks --photos gpu_inputs/photos
# Step 7 trains with --vgg_weights imagenet only when torch's cache holds vgg19-dcbb9e9d.pth (else random,
# which the summary says; --vgg_weights PATH to give a file).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --target /tmp/ibcln_site .whl/*.whl \
    && export PYTHONPATH="/tmp/ibcln_site${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PYTHON" scripts/gpu_check.py "$@"
