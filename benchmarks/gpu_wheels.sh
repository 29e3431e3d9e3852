#!/usr/bin/env bash
# Download the wheels of benchmarks/gpu_wheels.txt for the GPU machine's Python (3.12, x86-64) into .whl/ (ignored by
# git): a GPU run names .whl in the device tool's `carry`, and gpu_check.sh installs them there. Needs PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
mkdir -p .whl
# all pure Python, so a wheel made here serves Python 3.12 there; `pip wheel` also builds the one that PyPI has only
# as a source archive (gputil)
"$python" -m pip wheel -q --no-deps -w .whl -r benchmarks/gpu_wheels.txt 2> >(grep -v "is ignored" >&2)
for w in .whl/*.whl; do
    unzip -p "$w" '*.dist-info/WHEEL' | grep -q '^Tag: py3-none-any\|^Tag: py2.py3-none-any' \
        || { echo "$w is not pure Python: download the cp312 manylinux wheel instead" >&2; exit 1; }
done
du -sh .whl
