#!/usr/bin/env bash
# MBLFE end to end on the embedded benchmark (quick size): data -> statistics -> MBLFE and two
# baselines -> test metrics side by side. About a minute on 2 CPU cores.
set -euo pipefail
export HF_HUB_OFFLINE=1
work=${1:-mblfe-demo}
mkdir -p "$work"

# 1. the embedded benchmark in the CRGCN/MBLFE folder format (view, collect, cart, buy)
affectkit data make mblfe --out "$work/data" --quick --overwrite

# 2. statistics and the known data issues (validation == test, leaks, id gaps) as JSON
affectkit --json data stats mblfe --data "$work/data" | tail -n1 \
  | jq -c '{users, items, target, test: .test.pairs, seen_in_aux: .test_seen_in_any_auxiliary}'

# 3. MBLFE and two baselines on the same loop, sampler and evaluator; each run keeps its best epoch
for model in mblfe lightgcn-target mf-bpr; do
  affectkit --json train mblfe --data "$work/data" --out "$work/$model" --overwrite \
    --set model.name="$model" --set train.batch_size=64 --set schedule.epochs=30 >/dev/null
done

# 4. full-ranking test metrics of the best-validation checkpoints, one JSON line per model
for model in mblfe lightgcn-target mf-bpr; do
  affectkit --json evaluate mblfe --run "$work/$model" --split test | tail -n1 \
    | jq -c "{model: \"$model\", hr10: .metrics[\"hit@10\"], ndcg10: .metrics[\"ndcg@10\"]}"
done
