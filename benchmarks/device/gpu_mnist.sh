#!/bin/bash
# The MNIST checks on the GPU: the sweep benchmark (8 learning rates in one program against 8
# sequential runs) and mnist_mlp's bfloat16/float32 step time. Run by the device tool from the repo
# root with .whl and .devmnist carried (stage.sh).
set -u
mkdir -p .devdata/data && rm -rf .devdata/data/mnist && cp -r .devmnist/mnist .devdata/data/
source benchmarks/device/setup.sh
nvidia-smi --query-gpu=name --format=csv,noheader
timeout ${SWEEP_SECONDS:-220} $PY -m benchmarks.sweep_speed --epochs=3 \
  --out=$OUT/sweep_speed_gpu.json 2>&1 | tail -6
timeout ${PRECISION_SECONDS:-60} $PY -m benchmarks.precision --models=mnist_mlp --steps=400 --max_wait=1 \
  --out=$OUT/precision_gpu_mlp.json 2>&1 | tail -3
ls -la $OUT
