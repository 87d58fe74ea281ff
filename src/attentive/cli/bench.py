"""``attentive bench NAME [ARGS...]``: run one of the benchmarks in a source checkout.

The benchmarks live in ``benchmarks/`` beside ``src/`` (they import the peers, which the
package does not depend on), so this command only finds the script and runs it with the
remaining arguments: ``attentive bench train-decoder --device cpu`` is
``python benchmarks/bench_train_decoder.py --device cpu``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCHMARKS = {
    "train-decoder": "bench_train_decoder.py",
    "train-encdec": "bench_train_encdec.py",
    "generate": "bench_generate.py",
    "attention": "bench_attention.py",
}


def benchmarks_dir() -> Path:
    """``benchmarks/`` of the checkout this package was installed from (editable installs)."""
    return Path(__file__).resolve().parents[3] / "benchmarks"


def run(args) -> int:
    script = benchmarks_dir() / BENCHMARKS[args.benchmark]
    if not script.is_file():
        raise FileNotFoundError(
            f"{script} not found: `attentive bench` runs the benchmarks of a source checkout "
            f'(pip install -e ".[bench]")'
        )
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    return subprocess.call([sys.executable, str(script), *rest])


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark against the peers (source checkout): " + ", ".join(BENCHMARKS),
        description="Run benchmarks/bench_*.py; arguments after the name go to the script (--device, --small, ...).",
    )
    p.add_argument("benchmark", choices=sorted(BENCHMARKS))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark script")
    p.set_defaults(func=run)
