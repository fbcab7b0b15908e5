#!/usr/bin/env bash
# act-prompt end to end on the embedded images: data -> Activation Prompt with the layer sweep -> the
# visual prompt and the PEFT baselines on the same budget, in one command -> evaluation, prediction and
# the saved prompt. A short budget here; the recipes' 300 steps are the bench's. Run from the repository
# root; the first run pretrains the tiny ResNet on the source task (about a minute, cached).
set -euo pipefail
export HF_HUB_OFFLINE=1
work=${1:-act-prompt-demo}
steps=${STEPS:-100}
mkdir -p "$work"

# 1. ImageFolder PNGs: a source task (for pretraining) and three shifted tasks (digits, shapes-shift, textures)
affectkit data make act-prompt --out "$work/data" --overwrite
ls "$work/data"

# 2. AP on digits; layer=auto trains every block briefly and keeps the best on validation (sweep.png)
affectkit --json train act-prompt --data "$work/data" --config commands/train/act-prompt.yaml \
  --max-steps "$steps" --set sweep.steps=30 --out "$work/ap" --overwrite \
  | tail -n1 | jq -c '{layer, accuracy, trainable: .costs.trainable_params, s_per_epoch: .costs.train_s_per_epoch}'
cat "$work/ap/sweep.csv"

# 3. every method on the same data and budget: the table on stdout, comparison.json and comparison.png
affectkit train act-prompt --data "$work/data" --config commands/train/act-prompt.yaml --max-steps "$steps" \
  --set sweep.steps=30 --compare ap,vp,linear,norm,lora,full --out "$work/all" --overwrite

# 4. the run on the test split, then predictions for a folder of images
affectkit --json evaluate act-prompt --run "$work/ap" | tail -n1 | jq -c '{split, layer, metrics}'
affectkit predict act-prompt --run "$work/ap" "$work/data/digits/test/7" --format csv | head -n 4

# 5. the saved prompt: adapter.safetensors + adapter.json (layer, shape, placement, classes)
jq -c '{method, layer, shape, placement, prompt_shape}' "$work/ap/adapter/adapter.json"
