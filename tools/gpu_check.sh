#!/usr/bin/env bash
# The GPU check: every CUDA path of IBCLN in one command, within a time budget that leaves room for a rerun of
# its failed steps (tools/gpu_check.py; tools/README.md and docs/gpu.md give the steps and the time plan).
#
#   bash tools/gpu_check.sh [--bundle DIR] [--steps 1,3,...] [--budget S] [--minutes M] [--out DIR]
#   bash tools/gpu_check.sh --cpu-dry-run [--bundle DIR]      # every step on the CPU at tiny sizes
#   bash tools/gpu_check.sh --prepare DIR [--target-python 3.12] [--platform manylinux2014_x86_64] \
#       [--vgg_weights vgg19-dcbb9e9d.pth] [--benchmarks DIR] [--photos DIR]   # on a machine with network
#
# It prints its time plan first and writes only summary.json, gpu_check.log and benchmark.json to $OUT when set,
# else results/gpu_check/ (--out); its work folder is <tmp>/ibcln_gpu_check (--work). Exit status: 0 all passed,
# 1 a step failed, 124/137 the check was stopped or killed: then the step in flight is recorded as killed in
# summary.json, and the last line gives the command that reruns the steps that did not pass.
# Interpreter: $PYTHON, else .venv/bin/python when present, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -m tools.gpu_check "$@"
status=$?
if [ "${1:-}" != "--prepare" ] && { [ "$status" = 124 ] || [ "$status" = 137 ]; }; then
  # Killed from outside (SIGKILL, the OOM killer) it could not record the step in flight itself.
  "$PYTHON" -m tools.gpu_check "$@" --record-killed "$status"
fi
exit "$status"
