#!/usr/bin/env bash
# The GPU measurement of issue 19 in one command (under 8 minutes): writes device_check.json and device_check.md
# into the folder given (default: results/device-check). Run from the repository root on the GPU machine.
set -euo pipefail
out="${1:-results/device-check}"
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
exec timeout 470 "$python" benchmarks/device_check.py --device cuda --out "$out"
