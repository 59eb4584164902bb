#!/bin/bash
# GPU checks for issues 5 and 6, run by the device tool from the repo root. QUICK=1: a CPU dry run.
set -u
source benchmarks/device/setup.sh
( nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  $PY -c "import jax, flax, optax, orbax.checkpoint as o; print(jax.__version__, flax.__version__, optax.__version__, jax.devices())" ) 2>&1 | tee $W/env.txt
$PY benchmarks/device/unpack_cifar.py .devdata .devdata/data/cifar10 > $W/unpack.log 2>&1 &
if [ -n "${QUICK:-}" ]; then
  LSTM="--config.data.max_chars=300000 --config.train.num_epochs=1 --config.model.hidden=64"; C1=":quick"; C2=":quick"
else
  LSTM=""; C1=""; C2=":official94"
fi
run() {  # name, timeout, args...
  local name=$1 t=$2 cfg=$3; shift 3; local s=$(date +%s)
  timeout $t $PY -m launch.main --config=$cfg --workdir=$W/$name --config.tensorboard=False --config.progress=False "$@" > $W/$name.log 2>&1
  echo "$name rc=$? seconds=$(( $(date +%s) - s ))" | tee -a $W/summary.txt; tail -3 $W/$name.log
}
if [ -z "${SKIP_LSTM:-}" ]; then
run char_lstm 200 experiments/char_lstm.py $LSTM
timeout 30 $PY -m launch.sample --workdir=$W/char_lstm --prime="Anna" --length=1000 --temperature=0.8 --top_k=5 --seed=0 > $W/char_lstm/sample_cli.txt 2>&1; head -c 600 $W/char_lstm/sample_cli.txt
fi
wait; cat $W/unpack.log
run cifar10_fast 140 experiments/cifar10_fast.py$C1 --config.model.fast_conv=False
for seed in 0 1 2; do
  run cifar10_fast94_files_s$seed $([ $seed = 0 ] && echo 90 || echo 55) experiments/cifar10_fast.py$C2 --config.data.source=files --config.model.fast_conv=False --config.seed=$seed
done
grep -h '"mean"' $W/*/results.json | head; nvidia-smi --query-gpu=name --format=csv,noheader
tar czf $OUT/gpu_runs.tgz --exclude=checkpoints -C /tmp gpu_runs; ls -la $OUT
