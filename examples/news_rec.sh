#!/usr/bin/env bash
# news-rec end to end on the embedded benchmark (quick size): data -> statistics -> the SEIN-style
# model and its global-only ablation -> official MIND metrics -> prediction.txt -> the scorer.
set -euo pipefail
export HF_HUB_OFFLINE=1
work=${1:-news-rec-demo}
mkdir -p "$work"

# 1. MIND-format data with drifting interests (train/ = days 0-12, dev/ = day 13)
affectkit data make news-rec --out "$work/data" --quick --overwrite
affectkit --json data stats news-rec --data "$work/data" | tail -n1 | jq -c '{train: .train.impressions, dev: .dev.impressions, cold: .dev.cold_share}'

# 2. the full model and the global-only ablation, same loop and budget
for variant in sein global; do
  affectkit --json train news-rec --data "$work/data" --out "$work/$variant" --overwrite \
    --set model.variant="$variant" --set model.news_encoder=bow --set schedule.epochs=1 --set train.batch_size=256 >/dev/null
  affectkit --json evaluate news-rec --run "$work/$variant" | tail -n1 | jq -c "{variant: \"$variant\", metrics}"
done

# 3. a submission file in the official format, scored by the built-in MIND scorer
affectkit --json predict news-rec "$work/data/dev" --run "$work/sein" | tail -n1 | jq -r .prediction
head -n 2 "$work/sein/prediction.txt"
affectkit --json evaluate news-rec --predictions "$work/sein/prediction.txt" --truth "$work/data/dev/behaviors.tsv" \
  | tail -n1 | jq -c .metrics
