#!/usr/bin/env bash
# The first GPU run, in one command of under 8 minutes, on a machine where nothing of clbench is installed:
#
#   bash benchmarks/gpu_check.sh OUTDIR                      # on the GPU machine (python3 there, CUDA)
#   bash benchmarks/gpu_check.sh OUTDIR --device cpu --quick # the rehearsal here (tests/test_gpu_check.py)
#
# 1. set-up: the repository on PYTHONPATH (clbench runs from the checkout), the wheels in .whl/ (made here by
#    benchmarks/gpu_wheels.sh) installed into a temporary folder, or $CLBENCH_CARRIED where they already are,
#    and benchmarks/gpu_stubs where wandb is missing; OUTDIR/preflight.txt says what was found;
# 2. a smoke run of the real CLI on digits (about 2 minutes on the GPU): `clbench run` with dm, ddm, dsa and
#    herding (2 steps, 2 orders side by side with --jobs 2), `clbench condense` with dm, `clbench compare`;
#    each command's exit status and seconds in OUTDIR/smoke.tsv as it ends, their output in OUTDIR/smoke.log
#    (the --quick rehearsal runs dm and herding only, and compare as JSON: what differs there is the path);
# 3. benchmarks/device_check.py with the time left: OUTDIR/device_check.{json,md}, rewritten after every cell.
# Every step runs whatever the one before it did; the exit status is the number of steps that failed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: bash benchmarks/gpu_check.sh OUTDIR [--device cpu --quick]" >&2; exit 2; }
mkdir -p "$1" && out=$(cd "$1" && pwd) || exit 2
shift
device=cuda quick=()
while [ $# -gt 0 ]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --quick) quick=(--quick); shift ;;
        *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
python=${PYTHON:-python3}
limit=${CLBENCH_GPU_CHECK_S:-470}  # the whole check, inside the device tool's 10 minutes a command
start=$SECONDS
failed=0

# -- 1. set-up ---------------------------------------------------------------------------------------------
site=${CLBENCH_CARRIED:-}
if [ -z "$site" ] && compgen -G "$repo/.whl/*.whl" >/dev/null; then
    site=$(mktemp -d)/site
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$repo"/.whl/*.whl \
        || { echo "gpu_check.sh: the wheels in .whl/ did not install" >&2; failed=$((failed + 1)); }
fi
export PYTHONPATH="$repo${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$python" -c "import wandb" 2>/dev/null || PYTHONPATH="$PYTHONPATH:$repo/benchmarks/gpu_stubs"
cd "$repo" || exit 2
"$python" - "$device" > "$out/preflight.txt" 2>&1 <<'PY' || failed=$((failed + 1))
import importlib, sys
import torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| cuda available", torch.cuda.is_available())
if sys.argv[1].startswith("cuda"):
    print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
for name in ("clbench", "clbench.condensers", "clbench.strategies", "avalanche", "wandb"):
    module = importlib.import_module(name)
    print(f"{name}: {module.__dict__.get('__version__', '')} {module.__file__}")
PY
cat "$out/preflight.txt"

# -- 2. the smoke run --------------------------------------------------------------------------------------
if [ ${#quick[@]} -gt 0 ]; then iters=2 dsa_iters=1 epochs=1; else iters=20 dsa_iters=2 epochs=10; fi
common=(--dataset digits --device "$device" --profile quick --seed 0)
smoke=$out/smoke
printf 'command\texit\tseconds\n' > "$out/smoke.tsv"
step() {  # one CLI command, logged; its exit status and seconds appended to smoke.tsv
    local began=$SECONDS
    echo "== clbench $*" >> "$out/smoke.log"
    timeout 150 "$python" -m clbench "$@" >> "$out/smoke.log" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\n' "clbench $*" "$rc" "$((SECONDS - began))" >> "$out/smoke.tsv"
    [ "$rc" = 0 ] || failed=$((failed + 1))
}
# the rehearsal (--quick, on a CPU) keeps what differs by path, not by condenser: its seconds are process starts
if [ ${#quick[@]} -gt 0 ]; then condensers="dm herding"; else condensers="dm ddm dsa herding"; fi
for condenser in $condensers; do
    orders=(--orders 2 --jobs 2)  # two orders side by side on the one device
    case $condenser in
        dsa) opts=(--opt "iterations=$dsa_iters" --opt loops=1,2) ;;
        herding) opts=() ;;
        *) opts=(--opt "iterations=$iters") ;;
    esac
    step run "${common[@]}" --condenser $condenser --steps 2 --memory 2ipc "${orders[@]}" "${opts[@]}" \
        --train "epochs=$epochs" --out "$smoke/run"
done
step condense "${common[@]}" --condenser dm --ipc 2 --sets 1 --evals 1 --opt "iterations=$iters" \
    --train "epochs=$epochs" --out "$smoke/condense"
[ ${#quick[@]} -gt 0 ] || step compare "$smoke/run"
step compare "$smoke/run" --format json
cat "$out/smoke.tsv"

# -- 3. the device check, with the time left ---------------------------------------------------------------
left=$((limit - (SECONDS - start)))
budget=$((left - 140))  # no cell starts after this; the slowest (a compile) takes up to two minutes
[ "$budget" -gt 20 ] || budget=20
timeout "$left" "$python" benchmarks/device_check.py --device "$device" --out "$out" --budget-s "$budget" \
    "${quick[@]}" || failed=$((failed + 1))
echo "gpu_check.sh: $failed step(s) failed, $((SECONDS - start)) s; results in $out"
exit "$failed"
