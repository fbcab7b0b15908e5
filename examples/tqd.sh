#!/usr/bin/env bash
# tqd end to end on the embedded procedural videos: data -> scoring and typing into an Open-Sora meta CSV
# -> training on motion-rich + high-quality clips with TQD timestep sampling and with the uniform
# baseline -> evaluation (held-out golden loss per noise band, sample metrics, gradient similarity,
# plots). A short budget here; the recipes' 600 steps are the bench's. Run from the repository root.
set -euo pipefail
export HF_HUB_OFFLINE=1
work=${1:-tqd-demo}
steps=${STEPS:-150}
mkdir -p "$work"

# 1. clips/*.avi (FFV1, 32 x 32 px, 16 frames) and meta.csv with the generator's truth (speed, degradation, type)
affectkit data make tqd --out "$work/data" --quick --overwrite

# 2. motion and visual-quality scores, types by percentiles, the dilemma (Spearman of flow vs vq)
affectkit --json data score-videos "$work/data/meta.csv" --out "$work/data/meta_scored.csv" \
  | tail -n1 | jq -c '{n_scored, n_failed, types, flow_vq_spearman}'
head -n 3 "$work/data/meta_scored.csv" | cut -d, -f1-6

# 3. the same data and budget, two samplers: TQD categorical (p_skew 0.5) and uniform
affectkit --json train tqd --data "$work/data" --config commands/train/tqd.yaml --max-steps "$steps" \
  --out "$work/tqd" --overwrite | tail -n1 | jq -c '{sampler, train_types, metrics}'
affectkit --json train tqd --data "$work/data" --config commands/train/tqd/uniform.yaml --max-steps "$steps" \
  --out "$work/uniform" --overwrite | tail -n1 | jq -c '{sampler, metrics}'

# 4. evaluation: per-band loss on the held-out golden clips, 64 generated clips against them, the
#    gradient-similarity diagnostic on the golden / degraded / static pairs, and the plots
affectkit --json evaluate tqd --run "$work/tqd" --gradsim --plots "$work/tqd/plots" \
  | tail -n1 | jq -c '.metrics | with_entries(select(.key | test("golden_loss|rfvd|gradsim degraded")))'
ls "$work/tqd/plots"
