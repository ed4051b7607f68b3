#!/usr/bin/env bash
# The GPU checks, in one short run on a machine with a CUDA GPU (CI has none; the tests never need one):
#   1. bench_train on CUDA: the trainer (AMP bf16, channels_last, images on the GPU) against a plain loop,
#      with the variants that say where the difference comes from;
#   2. optionally the same trainer from another checkout (BEFORE=path/to/its/root), for a before/after;
#   3. one grid point of the `standard` preset, timed, with the stage-2 estimate;
#   4. bench_latency on CUDA at batch 1.
# Each step has its own time limit and a failed step does not stop the others; logs go to $OUT (default
# ./gpu-check). Usage: bash benchmarks/gpu_check.sh
set -u
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
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

step bench_train 150 "$python" benchmarks/bench_train.py --device cuda
if [ -n "${BEFORE:-}" ]; then
  # -P: the working directory's scaling_search must not shadow the one in $BEFORE
  step bench_train_before 60 env PYTHONPATH="$BEFORE:${PYTHONPATH:-}" "$python" -P -c "
import statistics
import scaling_search.train
print('trainer from', scaling_search.train.__file__)
from dataclasses import replace
from scaling_search.data import load_dataset
from scaling_search.family import efficientnet
from scaling_search.train import TrainSettings, train_proxy
data = load_dataset('synthetic', subset=10000, synthetic_train_per_class=1000)
spec = replace(efficientnet('b0'), resolution=64, num_classes=data.num_classes)
rates = [train_proxy(spec, data, TrainSettings(epochs=1, batch_size=256, lr=0.05, device='cuda', seed=seed)).images_per_s
         for seed in range(4)]
print('trainer of', '$BEFORE', ': images/s', [round(r, 1) for r in rates], '(first is the warm-up); median',
      round(statistics.median(rates[1:]), 1))"
fi
step grid_point_standard 200 "$python" benchmarks/bench_grid_point.py --preset standard --device cuda
step bench_latency 150 "$python" benchmarks/bench_latency.py --device cuda
