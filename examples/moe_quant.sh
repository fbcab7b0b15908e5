#!/usr/bin/env bash
# moe-quant end to end on the embedded tiny Mixtral: train, quantize with every order at 2.5 bits,
# evaluate each, and print a table of perplexities. Needs jq. About 4 minutes on one CPU core.
set -euo pipefail
work=${1:-runs/moe-quant-example}
mkdir -p "$work"

# 1. Train the tiny Mixtral (pydoc topics + rare-marker stream); the router snapshot is taken at init.
affectkit --json train moe-quant --config commands/train/moe-lm.yaml --out "$work/train" --overwrite \
  | tail -n1 | jq -r '"trained: \(.model_dir)  held-out ppl \(.metrics.ppl)"'
model="$work/train/model"

# 2. One quantized copy per order (the paper's `combined` first), all at 2.5 bits over {3,2}.
for order in combined router variance inverted random frequency sensitivity; do
  affectkit --json quantize mixtral --model "$model" --bits auto --avg-bits 2.5 --levels 3,2 \
    --order "$order" --out "$work/q-$order" --overwrite --no-eval | tail -n1 > "$work/q-$order.json"
done

# 3. Evaluate each with `affectkit evaluate moe-quant` and tabulate (order, achieved bits, ppl).
for order in combined router variance inverted random frequency sensitivity; do
  affectkit --json evaluate moe-quant --model "$work/q-$order" | tail -n1 \
    | jq -r --arg o "$order" '"\($o)\t\(.achieved_avg_bits)\t\(.metrics.ppl)"'
done | sort -t$'\t' -k3,3g | column -t

# 4. The same from Python: the quantized model is a transformers model.
python - "$work/q-combined" <<'PY'
import sys, affectkit, torch
model = affectkit.load_quantized(sys.argv[1])
ids = torch.tensor([list(b"def main():\n    return ")])
print("next byte:", repr(bytes([int(model(ids).logits[0, -1].argmax())])))
PY
