#!/usr/bin/env bash
# The GPU checks, in one short run on a machine with a CUDA GPU (CI has none; the tests never need one):
#   1. the CUDA tests (the captured training step against the eager one; skipped on machines without a GPU);
#   2. bench_train on CUDA: the trainer (AMP bf16, images on the GPU, the step as a CUDA graph) against a plain
#      loop, with the variants that say where the difference comes from;
#   3. one grid point of the `standard` preset, timed, with the stage-2 estimate, with the CUDA graph and without;
#   4. bench_latency on CUDA at batch 1 (LATENCY=1; measured before, see README).
# Each step has its own time limit and a failed step does not stop the others; logs go to $OUT (default
# ./gpu-check). Usage: bash benchmarks/gpu_check.sh
set -u
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, installed or not
python=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...: run, log to $out/NAME.log, report the exit status and the time
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "=== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  grep -v -E '(it|step)/s\]|^\s*$' "$out/$name.log" | tail -n 60
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(),
      'cudnn', torch.backends.cudnn.version())"

step cuda_tests 120 "$python" -m pytest -q -p no:cacheprovider tests/test_cuda_graph.py
step bench_train 150 "$python" benchmarks/bench_train.py --device cuda --epochs ${EPOCHS:-2}
step grid_point_standard 120 "$python" benchmarks/bench_grid_point.py --preset standard --device cuda
step grid_point_standard_eager 170 "$python" benchmarks/bench_grid_point.py --preset standard --device cuda --cuda-graph off
if [ -n "${LATENCY:-}" ]; then
  step bench_latency 150 "$python" benchmarks/bench_latency.py --device cuda
fi
