#!/usr/bin/env bash
# MER-Bench end to end with no model: embedded benchmark -> rules judge -> Table-2-style scores.
# Swap `--judge rules` for `--judge openai --base-url URL --model NAME` to use a real MLLM judge.
set -euo pipefail
work=${1:-$(mktemp -d)}

affectkit data make mer-bench --out "$work/bench" --overwrite
# how many calls would a 3-run x 8-row plan need (cache hits excluded)?
affectkit --json judge-memes --bench "$work/bench" --runs 3 --sample 8 --dry-run | jq '{unique_pairs, calls_needed}'
# judge, then score; the result line carries run_dir, so the two chain with jq
run_dir=$(affectkit --json judge-memes --bench "$work/bench" --judge rules --runs 3 --sample 8 --seed 42 \
            --out "$work/judge" --overwrite | tail -1 | jq -r .run_dir)
affectkit --json evaluate mer-bench --judgments "$run_dir" \
  | tail -1 | jq -r '.metrics | to_entries[] | select(.key | endswith(".Overall")) | "\(.key)\t\(.value)"' \
  | sort -t$'\t' -k2 -gr
cat "$run_dir/eval/table_2.md"
