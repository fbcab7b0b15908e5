#!/usr/bin/env bash
# rppg end to end on the embedded benchmark (quick size): data -> statistics -> the classical methods
# under both presets -> a short FreqPhys training -> its evaluation -> heart rate of one video with a plot.
set -euo pipefail
export HF_HUB_OFFLINE=1
work=${1:-rppg-demo}
mkdir -p "$work"

# 1. UBFC-rPPG-layout videos with a known pulse (subject<N>/vid.avi + ground_truth.txt + splits.csv)
affectkit data make rppg --out "$work/data" --quick --overwrite
affectkit --json data stats rppg --data "$work/data" | tail -n1 | jq -c '.splits | map_values(.recordings)'

# 2. the classical methods, the toolbox's whole-video protocol and FreqPhys' per-clip protocol
for method in pos chrom green; do
  for preset in toolbox freqphys; do
    affectkit --json evaluate rppg --data "$work/data" --method "$method" --preset "$preset" --set data.subset=hard \
      | tail -n1 | jq -c "{method: .method, preset: .preset, mae: .metrics.mae, snr: .metrics.snr}"
  done
done

# 3. FreqPhys at CPU size (one epoch here), then its test metrics with the per-window report
affectkit --json train rppg --data "$work/data" --config commands/train/rppg.yaml --set epochs=1 \
  --out "$work/freqphys" --overwrite | tail -n1 | jq -c '{step, best}'
affectkit --json evaluate rppg --run "$work/freqphys" --report "$work/report" | tail -n1 | jq -c .metrics
head -n 3 "$work/report/windows.csv"

# 4. heart rate of one video with no ground truth: a line per 10-s window, then the summary and a plot
affectkit --json predict rppg "$work/data/subject10/vid.avi" --method pos --window 5 --plot "$work/subject10.png" \
  | jq -c 'select(.event == "window" or .event == "result") | {event, window, hr, hr_median}'
