#!/bin/bash
# CIFAR fast-net sweep on the GPU (device tool, repo root): one line per variant in $1.
set -u
source benchmarks/device/setup.sh
$PY benchmarks/device/unpack_cifar.py .devdata .devdata/data/cifar10
i=0
while read -r t cfg args; do
  [ -z "$t" ] && continue; [ "${t#\#}" != "$t" ] && continue; i=$((i+1)); s=$(date +%s)
  timeout $t $PY -m launch.main --config=$cfg --workdir=$W/v$i --config.tensorboard=False --config.progress=False $args > $W/v$i.log 2>&1
  echo "v$i rc=$? s=$(( $(date +%s) - s )) $cfg $args :: $(tail -1 $W/v$i.log | cut -c1-60)" | tee -a $W/summary.txt
done < $1
tar czf $OUT/gpu_runs.tgz --exclude=checkpoints -C /tmp gpu_runs
