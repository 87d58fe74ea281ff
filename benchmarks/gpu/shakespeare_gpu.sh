#!/usr/bin/env bash
# Character-level Tiny Shakespeare on one CUDA GPU: the `shakespeare-char-gpu` recipe (bf16,
# torch.compile, a fixed 1,200 steps capped at 4.5 minutes), then a generated sample.
# Target: validation loss <= 1.40 (nanoGPT's 6-layer baseline: 1.47).
#
#   bash benchmarks/gpu/shakespeare_gpu.sh                 # results in runs/bench/
#   OUT=/some/dir bash benchmarks/gpu/shakespeare_gpu.sh   # results in $OUT
#   VARIANTS="weight_decay=0.3;dropout=0.3 max_steps=1600" bash benchmarks/gpu/shakespeare_gpu.sh
#
# VARIANTS: ';'-separated sets of config overrides, each trained at the same time as the recipe
# in its own process on the same GPU. The recipe is fixed in steps, so sharing the card changes
# how long a run takes, not the loss it reaches; a run alone takes about 0.6 min on an H200.
# One GPU session then measures the recipe and its candidates at once.
#
# Extra arguments go to every `attentive train` (e.g. `--device cpu --max-minutes 0.2
# compile=False` to try it without a GPU). Written to the results folder: shakespeare_gpu.log
# (and variant-N.log), results.json, metrics.jsonl, loss.png, sample.txt (500 characters after
# "ROMEO:", seed 1) and summary.json (the recipe's figures, and each variant's).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # runs from a checkout too
PY=${PYTHON:-python3}
RESULTS=${OUT:-runs/bench}
RUNS=$(mktemp -d "${TMPDIR:-/tmp}/shakespeare-char-gpu.XXXXXX")  # checkpoints stay out of the results
mkdir -p "$RESULTS"
IFS=';' read -r -a VARIANT_LIST <<<"${VARIANTS:-}"
# under a time budget (BUDGET_S, from run_all.sh) the variants stop by time in good order, 50 s
# before it ends; the recipe keeps its own limits (a variant's own max_minutes still wins)
CAP=()
[ -n "${BUDGET_S:-}" ] && CAP=("max_minutes=$(awk "BEGIN { print ($BUDGET_S - 50) / 60 }")")

pids=()
n=0
for variant in "${VARIANT_LIST[@]}"; do
  [ -z "${variant// /}" ] && continue
  n=$((n + 1))
  # shellcheck disable=SC2086  # each variant is a list of KEY=VALUE words
  $PY -m attentive train --recipe shakespeare-char-gpu --out "$RUNS/variant-$n" "$@" progress=false "${CAP[@]}" $variant \
    >"$RESULTS/variant-$n.log" 2>&1 &
  pids+=($!)
  echo "$variant" >"$RUNS/variant-$n.overrides"
done

start=$(date +%s%N)
$PY -m attentive train --recipe shakespeare-char-gpu --out "$RUNS/recipe" "$@" progress=false 2>&1 \
  | tee "$RESULTS/shakespeare_gpu.log"
wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))
for pid in "${pids[@]}"; do wait "$pid" || echo "a variant failed (exit $?): see its log"; done

RUN=$RUNS/recipe
cp "$RUN"/results.json "$RUN"/metrics.jsonl "$RUN"/loss.png "$RESULTS"/
$PY -m attentive generate --checkpoint "$RUN" "ROMEO:" --max-new-tokens 500 --temperature 0.8 --seed 1 \
  | tee "$RESULTS/sample.txt"
$PY - "$RUNS" "$RESULTS" "$wall_ms" "$n" <<'PY'
import json, sys
from pathlib import Path
import torch

runs, results, wall, variants = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]) / 1000, int(sys.argv[4])
run = runs / "recipe"
res = json.loads((run / "results.json").read_text())
train_cfg = json.loads((run / "train_config.json").read_text())
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
summary = {"recipe": "shakespeare-char-gpu", "device": device, "wall_seconds": round(wall, 1),
           "shared_with_variants": variants, "train_minutes": res.get("train_minutes"),
           "val_loss": res.get("val_loss"), "target_1_40": (res.get("val_loss") or 99) <= 1.40,
           "steps": res.get("step"), "max_minutes": train_cfg.get("max_minutes"), **res, "variants": []}
for i in range(1, variants + 1):
    folder = runs / f"variant-{i}"
    entry = {"overrides": (runs / f"variant-{i}.overrides").read_text().strip()}
    try:
        found = json.loads((folder / "results.json").read_text())
        entry.update(val_loss=found.get("val_loss"), steps=found.get("step"), train_minutes=found.get("train_minutes"))
        best = min((r for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
                    if r.get("split") == "val"), key=lambda r: r["loss"], default=None)
        if best:
            entry["best_periodic_val"] = {"step": best["step"], "loss": round(best["loss"], 4)}
    except (OSError, ValueError) as err:
        entry["error"] = f"{type(err).__name__}: {err}"
    summary["variants"].append(entry)
(results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
rm -rf "$RUNS"
