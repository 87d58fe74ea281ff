#!/usr/bin/env bash
# Builds llama.cpp's llama-bench and llama-server for benchmarks/bench_vs_llamacpp.py: the llama.cpp
# vendored in the llama-cpp-python 0.3.16 source distribution (build 4227c9b), for this CPU.
#
#   bash benchmarks/build_llamacpp.sh [DIR]     # DIR default: ~/.cache/attentive/llama.cpp
#
# Needs pip, cmake and a C++ compiler (apt-get install cmake build-essential). JOBS sets the build's
# parallelism (default 2), PYTHON the interpreter whose pip downloads the source (default python3).
# A second run reuses the download and the build folder. Ends with the line to export.
set -euo pipefail

VERSION=0.3.16
DIR="${1:-$HOME/.cache/attentive/llama.cpp}"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-2}"

mkdir -p "$DIR"
cd "$DIR"
if [ ! -d "llama_cpp_python-$VERSION" ]; then
    if [ ! -f "llama_cpp_python-$VERSION.tar.gz" ]; then
        "$PYTHON" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d .
    fi
    tar xzf "llama_cpp_python-$VERSION.tar.gz"
fi
cd "llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$JOBS" --target llama-bench llama-server

BIN="$(pwd)/build/bin"
"$BIN/llama-server" --version 2>&1 | head -1
echo
echo "export LLAMA_CPP_BIN=$BIN"
