#!/usr/bin/env bash
# Create ./.venv (if missing), install requirements.txt into it (with --dev also requirements-dev.txt), then the
# project itself in editable mode.
# Re-running is cheap: it reinstalls only when a requirements file is newer than the last install.
# PYTHON_BIN picks the interpreter that creates the venv (default python3, 3.10 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1
if [ ! -x .venv/bin/python ]; then
  "${PYTHON_BIN:-python3}" -m venv .venv
fi
stamp=.venv/.installed
[ "$dev" = 1 ] && stamp=.venv/.installed-dev
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ]; then
  echo "installing requirements into .venv (first time: a few minutes, torch is large) ..."
  # visdom 0.2.4 is a source package whose build imports pkg_resources: give it setuptools<81 and
  # build it without isolation (pip's isolated build would fetch a newer setuptools without pkg_resources).
  .venv/bin/pip install -q --disable-pip-version-check 'setuptools<81' wheel
  .venv/bin/pip install -q --disable-pip-version-check --no-build-isolation -r requirements.txt
  if [ "$dev" = 1 ]; then
    .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  fi
  touch "$stamp"
fi
# The project itself, editable (its packages import from the checkout; pyproject.toml lists them). Cheap to
# repeat; it also records a moved checkout.
.venv/bin/pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
