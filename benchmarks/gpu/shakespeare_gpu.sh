#!/usr/bin/env bash
# Character-level Tiny Shakespeare on one CUDA GPU: the `shakespeare-char-gpu` recipe (bf16,
# torch.compile, 4.5 minutes of training, compilation included), then a generated sample.
# Target: validation loss <= 1.40 (nanoGPT's 6-layer baseline: 1.47).
#
#   bash benchmarks/gpu/shakespeare_gpu.sh                 # results in runs/bench/
#   OUT=/some/dir bash benchmarks/gpu/shakespeare_gpu.sh   # results in $OUT
#
# Extra arguments go to `attentive train` (e.g. `--device cpu --max-minutes 0.2 compile=False` to
# try it without a GPU). Written to the results folder: shakespeare_gpu.log, results.json,
# metrics.jsonl, loss.png, sample.txt (500 characters after "ROMEO:", seed 1) and summary.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # runs from a checkout too
PY=${PYTHON:-python3}
RESULTS=${OUT:-runs/bench}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/shakespeare-char-gpu.XXXXXX")  # checkpoints stay out of the results
mkdir -p "$RESULTS"

start=$(date +%s%N)
$PY -m attentive train --preset shakespeare-char-gpu --out "$RUN" "$@" progress=false 2>&1 \
  | tee "$RESULTS/shakespeare_gpu.log"
wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))

cp "$RUN"/results.json "$RUN"/metrics.jsonl "$RUN"/loss.png "$RESULTS"/
$PY -m attentive generate --checkpoint "$RUN" "ROMEO:" --max-new-tokens 500 --temperature 0.8 --seed 1 \
  | tee "$RESULTS/sample.txt"
$PY - "$RUN" "$RESULTS" "$wall_ms" <<'PY'
import json, sys
from pathlib import Path
import torch

run, results, wall = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]) / 1000
res = json.loads((run / "results.json").read_text())
train_cfg = json.loads((run / "train_config.json").read_text())
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
summary = {"recipe": "shakespeare-char-gpu", "device": device, "wall_seconds": round(wall, 1),
           "train_minutes": res.get("train_minutes"), "val_loss": res.get("val_loss"),
           "target_1_40": (res.get("val_loss") or 99) <= 1.40, "steps": res.get("step"),
           "max_minutes": train_cfg.get("max_minutes"), **res}
(results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
rm -rf "$RUN"
