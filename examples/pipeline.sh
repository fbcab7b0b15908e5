#!/usr/bin/env bash
# Shell pipelines over affectkit's JSON lines: every task's quick benchmark, then a table of
# what ran and how long it took. Needs jq.
set -euo pipefail
out=${1:-bench-results}

# Which tasks can be benchmarked?
affectkit --json tasks | jq -r 'select(.event=="task" and (.verbs | index("bench"))) | .task' | tee /tmp/affectkit-tasks.txt

# Run them one at a time (xargs), keeping each task's JSON lines next to its report.
xargs -I{} sh -c "affectkit --json bench {} --quick --out '$out' | tee '$out/{}.jsonl' | tail -n1" < /tmp/affectkit-tasks.txt

# Seconds per task from the result lines.
jq -rs 'map(select(.event=="result")) | .[] | .seconds | to_entries[] | "\(.key)\t\(.value)s"' "$out"/*.jsonl
