#!/bin/bash
# CIFAR fast-net sweep on the GPU (device tool, repo root): one line per variant in $1.
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PLAYBOOK_DATA_DIR=$PWD/.devdata/data PLAYBOOK_CACHE_DIR=/tmp/pbcache PLAYBOOK_JAX_CACHE=/tmp/pbcache/jax
W=/tmp/gpu_runs; rm -rf $W; mkdir -p $W $OUT
mkdir -p .devdata/data/cifar10 && cp .devdata/SOURCE_cifar10.md .devdata/data/cifar10/SOURCE.md
python3 benchmarks/device/unpack_cifar.py .devdata .devdata/data/cifar10
i=0
while read -r t cfg args; do
  [ -z "$t" ] && continue; [ "${t#\#}" != "$t" ] && continue; i=$((i+1)); s=$(date +%s)
  timeout $t python3 -m launch.main --config=$cfg --workdir=$W/v$i --config.tensorboard=False --config.progress=False $args > $W/v$i.log 2>&1
  echo "v$i rc=$? s=$(( $(date +%s) - s )) $cfg $args :: $(tail -1 $W/v$i.log | cut -c1-60)" | tee -a $W/summary.txt
done < $1
tar czf $OUT/gpu_runs.tgz --exclude=checkpoints -C /tmp gpu_runs
