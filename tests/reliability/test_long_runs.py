"""The long reliability runs, as slow tests: each script writes its result file into a temporary
folder, and the test holds the figures to what the threat model promises (docs/reliability.md).
The default suite runs the short versions (tests/interop, tests/text, tests/train, tests/serve)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "benchmarks" / "reliability"


def run(script: str, *args: str, timeout: int) -> dict:
    out = Path(args[args.index("--out") + 1])
    done = subprocess.run([sys.executable, str(SCRIPTS / script), *args], cwd=ROOT, timeout=timeout)
    assert done.returncode == 0, f"{script} exited with {done.returncode}"
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
def test_every_reader_survives_five_minutes_of_fuzzing(tmp_path):
    result = run("fuzz_readers.py", "--seconds", "300", "--out", str(tmp_path / "fuzz.json"), timeout=4 * 3600)
    failures = {target: figures["failure_list"] for target, figures in result["figures"].items() if figures["failures"]}
    assert not failures, f"readers that failed: {json.dumps(failures, indent=1)[:4000]}"
    assert all(figures["inputs"] > 0 for figures in result["figures"].values())


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_runs_survive_a_hundred_kills(tmp_path):
    result = run("kill_runs.py", "--command-kills", "40", "--out", str(tmp_path / "kills.json"), timeout=3600)
    figures = result["figures"]
    assert figures["training_kills"] >= 100
    assert figures["failures"] == 0 and figures["survived"] == figures["kills"], result.get("failure_details")
    assert figures["chains_resumed_to_identical_result"] == figures["chains"]
