#!/usr/bin/env bash
# au-fe (SSM) end to end on the embedded benchmark: data -> train -> evaluate -> predict on a video.
set -euo pipefail
work=${1:-au-fe-example}
mkdir -p "$work"

affectkit data make au-fe --out "$work/data" --quick --overwrite
run_dir=$(affectkit --json train au-fe --data "$work/data" --config commands/train/au-fe.yaml \
  --max-steps 60 --out "$work/run" --overwrite | jq -r 'select(.event=="result") | .run_dir')
affectkit --json evaluate au-fe --run "$run_dir" --checkpoint last | jq -c '.metrics | {fe_uar, fe_war, au_f1, au_auc}'

# a short face video rendered like the benchmark, then OpenFace-style per-frame AU columns
python - "$work/face.avi" <<'PY'
import sys, cv2, numpy as np
from affectkit.tasks.au_fe.synth import _identity, render
rng = np.random.default_rng(0); ident = _identity(rng, "fe")
w = cv2.VideoWriter(sys.argv[1], cv2.VideoWriter_fourcc(*"MJPG"), 25, (128, 128))
for k in range(48):
    w.write(render(ident, {6: min(1, k / 12), 12: min(1, k / 12)}, 128, rng, 0.0, 1.0, 2.0, (0.0, 0.0))[:, :, ::-1])
w.release()
PY
affectkit predict au-fe "$work/face.avi" --run "$run_dir" --checkpoint last --format csv --out "$work/face_aus.csv"
head -n 3 "$work/face_aus.csv" | cut -c1-120
