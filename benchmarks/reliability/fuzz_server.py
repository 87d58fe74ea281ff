"""Schema-driven fuzzing of ``attentive serve`` (schemathesis), the long run: ``--examples`` generated
requests per operation and mode (valid bodies, bodies that break the schema) against the server
in process over one tiny model of every kind (``tests/serve/serve_fuzz.py``, the driver the
default test runs with 8). Each answer is checked: no 5xx, a documented status, content type and
headers, a body valid against its schema, and an invalid body refused with a 4xx.

Writes ``benchmarks/reliability/server_fuzz.json``: the operations, requests generated, failures
by kind (with one example each), the statuses seen, and the bugs fuzzing found that are fixed
(each with its regression test).

    python benchmarks/reliability/fuzz_server.py                   # 200 per operation and mode, fixed seed
    python benchmarks/reliability/fuzz_server.py --examples 1000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests" / "serve"), str(REPO / "tests"), str(REPO / "src")]

import context_common  # noqa: E402
from serve_fuzz import fuzz, fuzz_app  # noqa: E402

OUT = HERE / "server_fuzz.json"
FIXED = [  # what fuzzing (this driver, the probes beside it, the soak) found: each now a 400, with its test
    {
        "bug": "a lone UTF-16 surrogate escaped in the JSON (\\ud800) reached the tokenizer: 500 TypeError",
        "fix": "serve/endpoints/common.py read_json: 400 naming the field",
        "test": "tests/serve/test_serve_fuzz.py::test_a_lone_surrogate_is_a_400_naming_the_field",
    },
    {
        "bug": "JSON nested 100,000 deep: 500 RecursionError in json.loads",
        "fix": "serve/endpoints/common.py read_json: 400",
        "test": "tests/serve/test_serve_fuzz.py::test_json_nested_too_deeply_is_a_400",
    },
    {
        "bug": "seed outside 64 bits: 500 from the engine's generator",
        "fix": "serve/schemas.py: seed within int64 (in the OpenAPI schema)",
        "test": "tests/serve/test_serve_fuzz.py::test_a_seed_outside_64_bits_is_a_400",
    },
    {
        "bug": "translation alpha 5e307: 500 OverflowError in the length penalty",
        "fix": "serve/schemas.py: alpha <= 10 (in the OpenAPI schema)",
        "test": "tests/serve/test_serve_fuzz.py::test_a_huge_length_penalty_is_a_400",
    },
    {
        "bug": "the schema declared a stream as one string: with itemSchema, schema is the stream as an array",
        "fix": "serve/openapi.py event_stream",
        "test": "tests/serve/test_serve_fuzz.py::test_a_stream_is_documented_as_its_events",
    },
    {
        "bug": "stop strings had no length limit",
        "fix": "serve/schemas.py MAX_STOP_CHARS (256, in the OpenAPI schema)",
        "test": "tests/serve/test_serve_security.py::test_a_request_over_a_limit_is_refused_naming_it",
    },
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200, help="per operation and mode (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="0: derandomized (the same cases every run)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    app = fuzz_app(Path(tempfile.mkdtemp(prefix="fuzz-")))
    try:
        report = fuzz(app, args.examples, seed=args.seed)
    finally:
        app.state.attentive.close()
    result = {
        **context_common.provenance(),
        "figures": {
            "operations": len(report["operations"]),
            "examples_per_operation_and_mode": args.examples,
            "requests": report["requests_total"],
            "failures": sum(report["failures"].values()),
            "failures_by_kind": report["failures"],
            "failure_examples": report["examples"],
            "operations_without_negative_cases": report["no_cases"],
            "seconds": report["seconds"],
            "fixed": FIXED,
        },
        "tables": {
            "requests": {
                "columns": ["operation", "requests"],
                "rows": [[op, report["requests"].get(op, 0)] for op in report["operations"]],
            },
            "statuses": {
                "columns": ["operation", "status", "count"],
                "rows": [[*key.rsplit(" ", 1), n] for key, n in report["statuses"].items()],
            },
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result["figures"].items() if k != "fixed"}, indent=2, ensure_ascii=False))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
