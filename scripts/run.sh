#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv with the runtime dependencies (torch first),
# then `attentive train`, whose default recipe trains the bundled Multi30k German->English
# translator (15 minutes on 2 CPU cores). Extra arguments go to `attentive train`:
#   bash scripts/run.sh --max-steps 2 --out /tmp/runcheck     # a quick check of the whole path
#   bash scripts/run.sh --recipe shakespeare-char             # another recipe (attentive recipes)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export VIRTUAL_ENV=$PWD/.venv PATH=$PWD/.venv/bin:$PATH  # for anything the CLI starts

echo "[run] attentive train $*"
.venv/bin/attentive train "$@"

# The default recipe is the translator: show how to use what it wrote.
recipe="" out=""
while [ $# -gt 0 ]; do
  case $1 in
    --recipe|--preset) recipe=${2:-}; shift 2 || shift ;;
    --recipe=*|--preset=*) recipe=${1#*=}; shift ;;
    --out) out=${2:-}; shift 2 || shift ;;
    --out=*) out=${1#--out=}; shift ;;
    *) shift ;;
  esac
done
if [ -z "$recipe" ] || [ "$recipe" = multi30k-de-en ]; then
  echo
  echo "[run] translate with it:"
  echo "  .venv/bin/attentive translate --checkpoint ${out:-runs/multi30k-de-en} \"Ein Hund rennt durch den Park.\""
  echo "  (or '. .venv/bin/activate' once, then plain 'attentive ...' as in the README)"
fi
