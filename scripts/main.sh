#!/usr/bin/env bash
# The main job: set up, then train Model B on FSDD (official split, T = 10), evaluate the
# best checkpoint on the test split, quantise it to INT8 (PTQ, then 2 epochs of QAT; integer
# and ONNX exports checked against it), and write results and figures to runs/main/.
#   bash scripts/main.sh                      # FSDD from $SCNN_DATA_DIR, else downloaded to ~/.cache/scnn
#   bash scripts/main.sh --data-dir DIR       # use a local folder of FSDD wavs
# Any further `scnn train` options or key=value overrides pass through (e.g. --model model_a
# --epochs 40, or train.epochs=40 model.beta=0.7); the run config is configs/fsdd_model_b.yaml.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup_env.sh"
cd "$root"
out="${SCNN_OUT:-runs/main}"
# --overwrite: the main job starts afresh each time (a run folder is otherwise never reused silently).
scnn train --config configs/fsdd_model_b.yaml --out "$out" --overwrite "$@"
data_args=()
for ((i = 1; i <= $#; i++)); do
    if [ "${!i}" = "--data-dir" ]; then j=$((i + 1)); data_args=(--data-dir "${!j}"); fi
done
scnn evaluate --checkpoint "$out/best.pt" "${data_args[@]}" --out "$out/evaluation"
scnn quantize --checkpoint "$out/best.pt" "${data_args[@]}" --mode qat --epochs 2 --out "$out/int8"
scnn plot --run "$out" --quant "$out/int8" "${data_args[@]}" --out "$out/figures"
echo "results: $out/results.json, $out/evaluation/results.json, $out/int8/results.json; figures: $out/figures/"
