#!/bin/bash
# The GPU studies beside their PyTorch peers (issue 22, part 5), then, as time allows, the
# bfloat16/float32 step times and a full cifar10_cnn run. Run by the device tool from the repo root
# with .whl and .devdata carried (stage.sh); BUDGET is the seconds the whole script may take.
# QUICK=1: a small CPU dry run.
set -u
START=$(date +%s); BUDGET=${BUDGET:-470}
left() { echo $(( BUDGET - $(date +%s) + START )); }
source benchmarks/device/setup.sh
( nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nproc
  $PY -c "import jax, flax, optax, torch; print(jax.__version__, flax.__version__, optax.__version__, torch.__version__, jax.devices())" ) 2>&1 | tee $W/env.txt
$PY benchmarks/device/unpack_cifar.py .devdata .devdata/data/cifar10 > $W/unpack.log 2>&1 || { cat $W/unpack.log; exit 1; }
if [ -n "${QUICK:-}" ]; then Q="--quick --seeds=1 --peer_runs=1"; CNN=":quick"; STEPS=4,1; else Q=""; CNN=""; STEPS=200,40; fi
$PY -m benchmarks.gpu_peers $Q --parts=${PARTS:-cifar,lstm} --workdir=$W --timeout=240 --out=$OUT/gpu_peers.json \
  --variants="--config.precision=bfloat16" 2>&1 | tee $W/gpu_peers.log | grep -v '^|'
echo "peers done, $(left) s left"
if [ $(left) -gt 100 ]; then
  timeout $(( $(left) - 60 )) $PY -m benchmarks.precision --models=cifar10_cnn,char_lstm \
    --steps=$STEPS --max_wait=1 --out=$OUT/precision_gpu.json > $W/precision.log 2>&1; echo "precision rc=$?"; tail -4 $W/precision.log
fi
if [ $(left) -gt 90 ]; then
  timeout $(( $(left) - 25 )) $PY -m launch.main --config=experiments/cifar10_cnn.py$CNN \
    --workdir=$W/cifar10_cnn --config.progress=False --config.tensorboard=False > $W/cifar10_cnn.log 2>&1
  echo "cifar10_cnn rc=$?"; tail -2 $W/cifar10_cnn.log
fi
tar czf $OUT/gpu_runs.tgz --exclude=checkpoints \
  --exclude='airbench' -C /tmp gpu_runs
ls -la $OUT; echo "script took $(( $(date +%s) - START )) s"
