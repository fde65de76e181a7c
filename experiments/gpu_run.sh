#!/usr/bin/env bash
# One prepared run for the lent GPU machine (library `device` tool), with what it needs carried:
#   python experiments/gpu_pack.py -o .gpu_pack          # here first (needs ../shared)
#   device run, carry [".gpu_pack"], timeout_s 600:  bash experiments/gpu_run.sh
# Meta-trains experiments/gpu.toml for TRAIN_SECONDS, then writes to $OUT the exported init,
# the metrics, the environment, the training checkpoint (a later lent session can resume from
# it: put checkpoint.safetensors, config.json and metrics.jsonl in a run folder) and a
# `metastyle adapt` preview from the new init. The run folder itself stays outside $OUT: at most
# 8 files come back, and its samples/ alone holds more. Locally, as a smoke test:
#   OUT=/tmp/gpu-out TRAIN_SECONDS=60 bash experiments/gpu_run.sh --set train.steps=2
set -euo pipefail
TRAIN_SECONDS=${TRAIN_SECONDS:-480}
RUN=${RUN:-/tmp/metastyle-gpu-run}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export METASTYLE_CACHE=${METASTYLE_CACHE:-/tmp/metastyle-cache}
PY=${PYTHON:-python3}
rm -rf "$RUN"
"$PY" experiments/gpu_pack.py --unpack-encoder .gpu_pack
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# Being killed by timeout (124 / 137) is the planned end: checkpoints are atomic, the last is whole.
status=0
timeout --signal=KILL "$TRAIN_SECONDS" "$PY" -m metastyle.cli meta-train experiments/gpu.toml \
    --run-dir "$RUN" --no-progress "$@" || status=$?
case $status in 0|124|137) ;; *) exit "$status" ;; esac
# the shipped init's adapt recommendation (README, "Reproducing the numbers")
"$PY" -m metastyle.cli export-init "$RUN" -o "$OUT/gpu_init.safetensors" \
    --adapt-steps 50 --adapt-lr 0.1 --adapt-subset norm
for f in checkpoint.safetensors metrics.jsonl environment.json config.json; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/"; done
# The preview a user would get from this init (held-out Harvest in Provence, public domain).
"$PY" -m metastyle.cli adapt .gpu_pack/data/styles/s0079_harvest_in_provence_vincent_van_gogh.jpg \
    --base "$OUT/gpu_init.safetensors" -o "$OUT/harvest.safetensors" --preview "$OUT/harvest.jpg" \
    --no-progress
tail -n 3 "$OUT/metrics.jsonl" 2>/dev/null || true
