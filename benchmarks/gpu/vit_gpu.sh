#!/usr/bin/env bash
# Vision Transformer on MNIST on one CUDA GPU: the `vit-mnist-gpu` recipe, 4.5 minutes of training
# inside a 5-minute wall-clock budget (start-up, evaluations and the final test included).
#
#   bash benchmarks/gpu/vit_gpu.sh                 # results in runs/bench/
#   OUT=/some/dir bash benchmarks/gpu/vit_gpu.sh   # results in $OUT
#
# Extra arguments go to `attentive train` (e.g. `--device cpu --max-minutes 0.2` to try it without
# a GPU). Written to the results folder: vit_gpu.log, results.json, metrics.jsonl, loss.png,
# summary.json (accuracy, wall seconds, device) and attention.png (rollout on a test digit).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # runs from a checkout too
PY=${PYTHON:-python3}
RESULTS=${OUT:-runs/bench}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/vit-mnist-gpu.XXXXXX")  # checkpoints stay out of the results folder
mkdir -p "$RESULTS"

start=$(date +%s%N)
$PY -m attentive train --recipe vit-mnist-gpu --out "$RUN" --device cuda "$@" progress=false 2>&1 \
  | tee "$RESULTS/vit_gpu.log"
wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))

cp "$RUN"/results.json "$RUN"/metrics.jsonl "$RUN"/loss.png "$RESULTS"/
$PY - "$RUN" "$RESULTS" "$wall_ms" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
import torch
from attentive.data.images import load_mnist

run, results, wall = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]) / 1000
res = json.loads((run / "results.json").read_text())
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
summary = {"recipe": "vit-mnist-gpu", "device": device, "wall_seconds": round(wall, 1),
           "within_5_minutes": wall <= 300, "test_accuracy": res.get("test_accuracy"),
           "target_99_3": (res.get("test_accuracy") or 0) >= 0.993, **res}
(results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
images, _ = load_mnist("test")
Image.fromarray(images[0].numpy()).save(results / "digit.png")  # a test "7", for classify below
PY
$PY -m attentive classify --checkpoint "$RUN" "$RESULTS/digit.png" --attention "$RESULTS/attention.png"
rm -rf "$RUN"
