"""The soak (``benchmarks/reliability/soak_server.py``): a real server under 16 concurrent, partly
hostile clients for 30 minutes: no 5xx but the documented ones, memory flat after warm-up, no
rows left in the engine, and a normal answer at the end. Slow: run with ``-m slow``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reliability" / "soak_server.py"


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
def test_the_server_survives_thirty_minutes_of_hostile_load(tmp_path):
    out = tmp_path / "soak_server.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--minutes", "30", "--out", str(out)], timeout=3 * 3600 - 60)
    figures = json.loads(out.read_text())["figures"]
    assert figures["minutes"] >= 30
    assert figures["undocumented_5xx"] == 0, figures["five_xx"]
    assert figures["unexpected"] == 0, figures["failures"]
    assert abs(figures["rss_growth_after_warmup"]) <= 0.10, figures
    assert figures["leaked_rows"] == 0 and figures["server_alive_at_end"] and figures["answers_after"]
    assert figures["requests_ok"] > 0 and figures["rejected_429"] > 0 and figures["rejected_413"] > 0
    assert done.returncode == 0
