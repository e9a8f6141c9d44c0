#!/usr/bin/env bash
# Round 18 as it ran on the lent GPU machine (one H200, Keras on JAX), from the repo root there,
# with the features exported beforehand on a machine with the audio:
#   RAVDESS_DIR=../shared/ravdess .venv/bin/python benchmarks/export_features.py .device/features-hop20.npz
# and, where Keras is missing there, its wheels (keras, namex, optree) in .whl/. It trains the
# GPU row of the test benchmark (`cv --features`, the default config) beside seeds 42-45 of the
# default's member on validation actors; the second call ran NOROW=1 SEEDS="46 47 48 49", the
# third NOROW=1 PREFIX=gpu_pcen_seed (PCEN features, seeds 42-45).
# Everything lands in logs/, preds1/, preds4/ (folds 1-3 and 4-6) and reports/benchmarks/h200,
# packed into $OUT/results.tgz.
set -u
EXPERIMENTS=${EXPERIMENTS:-benchmarks/experiments_round18.yaml}
EXTRA=${EXTRA:-}
LIMIT=${LIMIT:-450}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p logs preds1 preds4
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; python3 -c "import keras, jax; print(keras.__version__, jax.__version__, jax.devices())"; git rev-parse HEAD) > logs/env.txt 2>&1
cat logs/env.txt
date +%s > logs/start
[ -n "${NOROW:-}" ] || timeout -s TERM $LIMIT python3 -m emotion_cnn.cli cv --protocol emobox --features .device/features-hop20.npz \
  --jobs 6 --out reports/benchmarks/h200 $EXTRA > logs/row.log 2>&1 &
for seed in ${SEEDS:-42 43 44 45}; do
  for half in 1 4; do
    timeout -s TERM $LIMIT python3 benchmarks/search.py .device/features-hop20.npz "$EXPERIMENTS" \
      --only ${PREFIX:-gpu_gru_64_seed}$seed --folds $half $((half + 1)) $((half + 2)) --procs 1 --round 18 \
      --predictions preds$half --log logs/results_log.jsonl > logs/val_${seed}_$half.log 2>&1 &
  done
done
while [ "$(jobs -r | wc -l)" -gt 0 ]; do sleep 30; echo "$(( $(date +%s) - $(cat logs/start) )) s: $(cat logs/*.log | grep -c '^fold ') folds done"; done
date +%s > logs/end
tar czf "${OUT:-/tmp}/results.tgz" logs preds1 preds4 $( [ -d reports/benchmarks/h200 ] && echo reports/benchmarks/h200)
