#!/usr/bin/env bash
# prime end to end on the embedded GBSG benchmark: data -> label-free pretraining (one fold here) ->
# fine-tuning for overall survival -> evaluation with a test-time missingness sweep and a
# Kaplan-Meier plot -> scoring the out-of-fold predictions file. Run from the repository root.
set -euo pipefail
export HF_HUB_OFFLINE=1
work=${1:-prime-demo}
mkdir -p "$work"

# 1. GBSG (clinical | labs | report; os and rfs endpoints) in $work/data, BC (genes | clinical | report) in $work/data/bc
affectkit data make prime --out "$work/data" --overwrite
head -n 3 "$work/data/manifest.csv"

# 2. pretraining on the training patients of fold 0, with half of the modalities missing at random
affectkit --json train prime --data "$work/data" --config commands/train/prime.yaml --fold 0 --missing mcar50 \
  --out "$work/pre" --overwrite | tail -n1 | jq -c '{stage, n_folds}'

# 3. the downstream stage from it: overall survival, NLL head, full fine-tuning
affectkit --json train prime --data "$work/data" --config commands/train/prime/finetune.yaml --fold 0 --missing mcar50 \
  --init "$work/pre" --endpoint os --out "$work/os" --overwrite | tail -n1 | jq -c '{metrics, std}'

# 4. every modality subset at test time, and the risk groups' survival curves
affectkit --json evaluate prime --run "$work/os" --sweep --km "$work/km.png" \
  | tail -n1 | jq -c '.sweep[] | {modalities, c_index}'

# 5. any model's predictions (case_id, risk, time, event) scored the same way
affectkit --json evaluate prime --predictions "$work/os/predictions.csv" | tail -n1 | jq -c '{c_index, auroc}'
