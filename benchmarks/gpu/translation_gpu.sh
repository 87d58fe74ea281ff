#!/usr/bin/env bash
# Multi30k German->English on one GPU: train the "multi30k-de-en-gpu" recipe for a time budget;
# its final evaluation averages the last checkpoints (when that lowers the validation loss) and
# scores test_2016_flickr and test_2017_flickr with beam search (sacreBLEU BLEU + chrF).
#
#   benchmarks/gpu/translation_gpu.sh                      # 10 minutes of training, run in runs/
#   MINUTES=5 BEAM=4 benchmarks/gpu/translation_gpu.sh lr=7e-4   # extra args are config overrides
#
# Results (results.json, metrics.jsonl, loss.png, train.log, summary.txt) go to $OUT when it is
# set (the run folder itself, with its checkpoints, stays in $RUN_DIR), else to the run folder.
set -euo pipefail
cd "$(dirname "$0")/../.."

MINUTES=${MINUTES:-10}
BEAM=${BEAM:-4}
RUN_DIR=${RUN_DIR:-runs/multi30k-de-en-gpu}
RESULTS=${OUT:-$RUN_DIR}
PY=${PYTHON:-python3}
# use the installed package if there is one, else this checkout's source tree
if ! "$PY" -c "import attentive.tasks.translation" 2>/dev/null; then
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
rm -rf "$RUN_DIR"  # a fresh run: no old checkpoints or metrics mixed in
mkdir -p "$RESULTS"

"$PY" -c 'import torch; print("torch", torch.__version__, "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' \
  | tee "$RESULTS/train.log"
# extra arguments before the fixed overrides: argparse takes options, then KEY=VALUE overrides
"$PY" -m attentive train --recipe multi30k-de-en-gpu --out "$RUN_DIR" --max-minutes "$MINUTES" \
  "$@" progress=false eval_beam="$BEAM" 2>&1 | tee -a "$RESULTS/train.log"

if [ "$RESULTS" != "$RUN_DIR" ]; then
  cp "$RUN_DIR/results.json" "$RUN_DIR/metrics.jsonl" "$RUN_DIR/loss.png" "$RESULTS/"
fi
"$PY" - "$RUN_DIR" <<'PY' | tee "$RESULTS/summary.txt"
import json, sys
from pathlib import Path
r = json.loads((Path(sys.argv[1]) / "results.json").read_text())
print(f"multi30k-de-en-gpu: trained {r['train_minutes']} min, {r['step']} steps, beam {r['search']['beam_size']}, "
      f"alpha {r['search']['alpha']}; averaged: {r.get('averaged', {}).get('kept', False)}")
for split in ("test_2016_flickr", "test_2017_flickr"):
    if split in r:
        print(f"{split}: BLEU {r[split]['bleu']:.2f}  chrF {r[split]['chrf']:.2f}")
print(f"signature: {r.get('bleu_signature')}")
PY
