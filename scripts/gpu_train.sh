#!/usr/bin/env bash
# The one command for a lent GPU machine (docs/training.md, "On a lent GPU machine"): from the carried .gpu/ bundle
# (scripts/gpu_bundle.py pack), train the demo's generator on for MINUTES (default 6.5, so that install, frames,
# validation, export and the transfers fit one 10-minute call) with the demo's recipe, and write the generator in
# pieces that come back, training.json, the last validation sheet and the log into $OUT. Extra arguments go to
# training/train_target.py (later ones win); MINUTES= (empty) leaves the time budget out, for --max_train_steps N
# with --lr_decay_steps, which a time budget refuses.
set -euo pipefail
: "${OUT:?run through the device tool, which sets OUT}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
python3 scripts/gpu_bundle.py unpack
budget=(--max_train_minutes "${MINUTES-6.5}")
[ -n "${MINUTES-6.5}" ] || budget=()
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision "${MIXED:-bf16}" \
    --dynamo_backend no training/train_target.py --dataset_dir .gpu/dataset --output_dir /tmp/run --init_from demo \
    --train_batch_size 16 --learning_rate 1e-4 --region_weight 4 --lambda_feature_matching 10 --lambda_perceptual 10 \
    --perceptual_weights .gpu/perceptual.safetensors --max_train_steps 1000000 "${budget[@]}" \
    --checkpointing_steps 1000000 --validation_steps 1000 "$@" 2>&1 \
    | stdbuf -oL tr '\r' '\n' | awk '!/^steps/ || NR % 100 == 0 {print; fflush()}' | tee "$OUT/train.log"
python3 scripts/gpu_bundle.py collect /tmp/run "$OUT"
