#!/usr/bin/env bash
# VC-soup end to end on the embedded benchmark: data -> filter -> per-value DPO -> soups -> front.
# Runs on CPU in a few minutes. Needs: pip install -e '.[text,rl]'
set -euo pipefail
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
work=${1:-vc-soup-demo}
mkdir -p "$work"

# 1. the embedded benchmark (conflicting and aligned settings, rewards from VADER and MiniLM)
affectkit data make vc-soup --out "$work/data" --quick

# 2. filter-prefs works in pipelines: stdin -> stdout, stats aside
cat "$work/data/conflicting/positivity_train.jsonl" \
  | affectkit filter-prefs - --values positivity,relevance --threshold 0 --stats "$work/stats.json" \
  | tee "$work/kept.jsonl" | wc -l
jq '{n_rows, kept, ratio, sign_agreement_rate}' "$work/stats.json"

# 3. one DPO policy per value on the filtered pairs (and the unfiltered baseline)
affectkit --json train vc-soup --data "$work/data" --out "$work/vc" --set sft.steps=150 --set dpo.steps=60 | tail -n1 | jq -c '.values | map_values(.n_train)'
affectkit --json train vc-soup --data "$work/data" --out "$work/plain" --set method=unfiltered --set sft.steps=150 --set dpo.steps=60 >/dev/null

# 4. the soup grid, Pareto set, hypervolume over the reference policy, LMC barrier, front.png
for run in vc plain; do
  affectkit --json evaluate vc-soup --run "$work/$run" | tail -n1 | jq -c "{run: \"$run\", hv_ref_policy, n_pareto, barrier_worst}"
done

# 5. one soup as a model directory (mergekit-compatible YAML written next to it)
affectkit merge "$work/vc/policies/positivity" "$work/vc/policies/relevance" --weights 0.3,0.7 --out "$work/soup-0.3"
cat "$work/soup-0.3/mergekit_config.yml"
