#!/usr/bin/env bash
# The GPU check: benchmarks/gpu_step.py (compiled forward mode vs plain, eager and FDS-style
# steps; hypergradient agreement; memory vs T; minutes per outer step at the paper's setting),
# then, optionally, the sampler comparison on the GPU.
#
#   benchmarks/gpu.sh                  # on a GPU machine (needs only torch)
#   benchmarks/gpu.sh --tiny           # tiny sizes on the CPU (tests/test_gpu_script.py)
#   PYTHON=.venv/bin/python benchmarks/gpu.sh --tiny --backend eager
#
# Arguments go to gpu_step.py. Results (JSON, named with the device, torch version and command)
# go to $OUT when set, else benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT_DIR=${OUT:-benchmarks/results}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"

"$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
      "cuda", torch.cuda.is_available() and torch.cuda.get_device_name())'
"$PYTHON" benchmarks/gpu_step.py --out-dir "$OUT_DIR" "$@"

# ---- optional step: sampler comparison on the GPU -------------------------------------------
# Runs only when optuna is importable, COMPARE_ARGS is set and this is not a --tiny run, e.g.
#   COMPARE_ARGS="--gpu --out-dir $OUT" benchmarks/gpu.sh
# (the command line of benchmarks/compare.py for the GPU goes into COMPARE_ARGS; point its
# --out-dir into "$OUT_DIR" so that the results come back from a GPU machine).
COMPARE_ARGS=${COMPARE_ARGS:-}
case " $* " in *" --tiny "*) COMPARE_ARGS="" ;; esac
if [ -z "$COMPARE_ARGS" ]; then
  echo "compare: skipped (COMPARE_ARGS not set, or --tiny)"
elif ! "$PYTHON" -c "import optuna" 2>/dev/null; then
  echo "compare: skipped (optuna is not importable here)"
else
  # shellcheck disable=SC2086  # COMPARE_ARGS is a list of arguments
  "$PYTHON" benchmarks/compare.py $COMPARE_ARGS
fi
