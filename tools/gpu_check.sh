#!/usr/bin/env bash
# One prepared check of IBCLN's CUDA paths on one GPU, within --budget seconds (default 480): each step gets a
# share of it (scripts/gpu_check.py, STEP_SHARES; the shares add up to the budget) plus what earlier steps left.
#   1 environment: the bundle installed, torch, CUDA, cuDNN, GPU, memory, native bf16       (25 s of 480)
#   2 tests/test_cuda.py (pytest -m cuda)                                                    (110 s)
#   3 training smoke: fp32, --amp bf16, --amp fp16, --channels_last, --compile, --continue_train   (130 s)
#   4 torchrun (nccl; 2 processes too if 2 GPUs)                                             (35 s)
#   5 test.py on a 2048x2048 image, whole and --tile                                         (40 s)
#   6 scripts/benchmark.py --device cuda (plain, channels_last, amp, fast_fp32)             (60 s)
#   7 a timed quality run: train, validate, score T_3 against I                              (80 s)
#
# Offline GPU machine (no pip index; dominate and pytest missing): on a machine with network, in the checkout,
#   bash scripts/gpu_check.sh --prepare gpu_bundle --target-python 3.12 [--platform manylinux2014_x86_64] \
#       [--vgg_weights vgg19-dcbb9e9d.pth] [--benchmarks DIR] [--photos DIR]
# gathers the wheels resolved for THAT Python and platform, the demo data, the VGG19 layers and the optional
# sets into gpu_bundle/ (git-ignored; a few tens of MB; scripts/gpu_prepare.py says what is in it). Then, on
# the GPU machine:
#   bash scripts/gpu_check.sh --bundle gpu_bundle [--budget S] [--steps 1,2,...] [--minutes M]
# installs the bundle's wheels with pip --no-index into the output folder (unpacks them if that Python has no
# pip) and takes every input from the bundle. Without --bundle the current environment must have them.
#   bash scripts/gpu_check.sh --cpu-dry-run [--bundle DIR]   # every step on the CPU at tiny sizes
#
# Writes summary.json (per step: status, seconds, time limit, details) and gpu_check.log under $OUT when set,
# else results/gpu_check/; exits 1 if any step failed. Interpreter: $PYTHON, else .venv/bin/python when
# present, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ "${1:-}" = "--prepare" ]; then
  shift
  exec "$PYTHON" scripts/gpu_prepare.py "$@"
fi
exec "$PYTHON" scripts/gpu_check.py "$@"
