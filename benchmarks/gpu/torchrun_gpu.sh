#!/usr/bin/env bash
# What torchrun costs on one GPU, and what FSDP saves: run on a machine with a CUDA GPU.
#
#   benchmarks/gpu/torchrun_gpu.sh                     # everything below, results under $OUT
#   RECIPE=multi30k-de-en-gpu STEPS=500 MODEL=llama-3b benchmarks/gpu/torchrun_gpu.sh
#
# 1. The recipe $RECIPE (default shakespeare-char-gpu) for $STEPS steps twice: plain
#    `python -m attentive train`, then `torchrun --nproc-per-node 1` (one process, NCCL, DDP);
#    prints both throughputs (mean of the logged rates after the first quarter) and their ratio.
# 2. `benchmarks/memory_table.py measure` on $MODEL (default llama-1b, random tokens, 16k tokens
#    per step): plain, then under torchrun with DDP, FSDP and FSDP + activation checkpointing;
#    prints tokens/s and peak GPU memory beside the estimate the README's table is made from.
# 3. FSDP checkpoints on NCCL: $RECIPE with --strategy fsdp under torchrun, then resumed by a plain
#    process (a change of world size), then the run folder loaded for inference.
# Run folders go under $OUT/runs (or a temporary folder); $OUT/summary.txt and
# $OUT/measure-*.json are the small files worth keeping.
#
# GPU=0 runs the same steps on CPU (gloo), to try the script where there is no GPU:
#   GPU=0 RECIPE=shakespeare-char STEPS=16 MODEL=llama-tiny MEASURE_STEPS=2 benchmarks/gpu/torchrun_gpu.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-$(mktemp -d /tmp/attentive-torchrun-gpu.XXXX)}
RUNS="$OUT/runs"
RECIPE=${RECIPE:-shakespeare-char-gpu}
STEPS=${STEPS:-400}
MODEL=${MODEL:-llama-1b}
MEASURE_STEPS=${MEASURE_STEPS:-12}
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc-per-node 1)
mkdir -p "$RUNS"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

GPU=${GPU:-1}
if [ "$GPU" = 1 ]; then
  CHECK="import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.__version__, torch.cuda.get_device_name())"
else
  CHECK="import torch; print(torch.__version__, 'CPU (gloo)')"
fi
"$PY" -c "$CHECK" \
  | tee -a "$SUMMARY"

rate() {  # mean tokens (or images ...) per second over the train records after the first quarter
  "$PY" - "$1" <<'PYEOF'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
rs = [r for r in rs if r.get("split") == "train"]
rs = rs[len(rs) // 4:]
key = next(k for k in rs[0] if k.endswith("_per_s"))
print(f"{sum(r[key] for r in rs) / len(rs):.1f} {key[:-6]}/s")
PYEOF
}

# 1. the same recipe without and with torchrun
# about 8 log records whatever STEPS is: rate() drops the first quarter (compilation, warm-up)
LOG_EVERY=$(( STEPS / 8 > 0 ? STEPS / 8 : 1 ))
if "$PY" -m attentive train --recipe "$RECIPE" --out "$RUNS/plain" --max-steps "$STEPS" log_every="$LOG_EVERY" \
     >"$RUNS/plain.log" 2>&1 &&
   "${TORCHRUN[@]}" -m attentive train --recipe "$RECIPE" --out "$RUNS/torchrun" --max-steps "$STEPS" \
     log_every="$LOG_EVERY" >"$RUNS/torchrun.log" 2>&1; then
  plain=$(rate "$RUNS/plain/metrics.jsonl")
  tr=$(rate "$RUNS/torchrun/metrics.jsonl")
  say "recipe $RECIPE, $STEPS steps"
  say "  plain python        : $plain"
  say "  torchrun, 1 process : $tr"
  say "  torchrun / plain    : $("$PY" -c "print(f'{${tr%% *} / ${plain%% *}:.3f}')")"
else
  say "recipe $RECIPE failed: see $RUNS/plain.log, $RUNS/torchrun.log"
  tail -5 "$RUNS/plain.log" "$RUNS/torchrun.log" 2>/dev/null || true
fi

# 2. memory and speed of DDP / FSDP / FSDP + AC against the estimate
say "memory_table.py measure, $MODEL ($MEASURE_STEPS steps):"
measure() {
  local tag=$1; shift
  "$@" benchmarks/memory_table.py measure --model "$MODEL" --steps "$MEASURE_STEPS" --out "$RUNS" "${MEASURE_ARGS[@]}" \
    >"$RUNS/$tag.log" 2>&1 || { say "  $tag: failed (see $RUNS/$tag.log)"; tail -5 "$RUNS/$tag.log"; return 0; }
  local line
  line=$(grep '^{' "$RUNS/$tag.log" | tail -1)
  echo "$line" > "$OUT/measure-$tag.json"
  say "  $tag: $line"
}
MEASURE_ARGS=(--strategy ddp); measure plain "$PY"
MEASURE_ARGS=(--strategy ddp); measure torchrun-ddp "${TORCHRUN[@]}"
MEASURE_ARGS=(--strategy fsdp); measure torchrun-fsdp "${TORCHRUN[@]}"
MEASURE_ARGS=(--strategy fsdp --ac); measure torchrun-fsdp-ac "${TORCHRUN[@]}"

# 3. FSDP save under torchrun (NCCL), resume without torchrun, load for inference
"${TORCHRUN[@]}" -m attentive train --recipe "$RECIPE" --out "$RUNS/fsdp" --max-steps 60 --strategy fsdp \
  compile=false checkpoint_every=50 >"$RUNS/fsdp.log" 2>&1 || say "fsdp torchrun run failed: $(tail -3 "$RUNS/fsdp.log")"
"$PY" -m attentive train --recipe "$RECIPE" --out "$RUNS/fsdp" --max-steps 80 --resume compile=false \
  checkpoint_every=50 >"$RUNS/fsdp-resume.log" 2>&1 || say "plain resume failed: $(tail -3 "$RUNS/fsdp-resume.log")"
"$PY" - "$RUNS/fsdp" <<'PYEOF' | tee -a "$SUMMARY"
import json, sys
import attentive
rs = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
steps = [r["step"] for r in rs if r.get("split") == "train"]
model = attentive.load(sys.argv[1])
print(f"fsdp (torchrun) -> plain resume: logged train steps {steps}; reloaded {type(model).__name__}")
PYEOF
echo "results: $OUT"
