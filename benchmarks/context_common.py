"""What the context-memory measurements share: the machine's conditions, CPU time, result files.

Every script under ``benchmarks/context_*.py`` writes ``<name>.json`` (the figures, the command,
the machine, each cell's wall and CPU time, the load average around it) and ``<name>.png`` into
``benchmarks/context/`` (or ``--out``), rewriting the JSON after every cell so a run cut short
keeps what it measured.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

OUT = Path(__file__).parent / "context"
REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """This checkout's commit (``-dirty`` when tracked files differ from it), else "unknown"."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance() -> dict[str, Any]:
    """The keys every result file opens with: command, commit, date, machine, torch (the
    documentation's tables are stamped from them: attentive.figures.provenance)."""
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "torch": torch.__version__,
    }


def machine() -> dict[str, Any]:
    """CPU model, cores, threads, memory, torch version, load average, date."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": memory,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def timed(record: dict[str, Any]):
    """Adds ``wall_s``, ``cpu_s`` and the load averages before and after to ``record``."""
    load, wall, cpu = os.getloadavg()[0], time.perf_counter(), cpu_seconds()
    yield record
    record["wall_s"] = round(time.perf_counter() - wall, 2)
    record["cpu_s"] = round(cpu_seconds() - cpu, 2)
    record["load_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]


class Results:
    """A JSON file rewritten after every cell: command, machine, settings, cells."""

    def __init__(self, name: str, out: Path | str | None, settings: dict[str, Any], grid: tuple[str, ...] = ()):
        self.grid = grid  # settings that only choose which cells run: runs differing in them share a file
        self.dir = Path(out) if out else OUT
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{name}.json"
        self.png = self.dir / f"{name}.png"
        self.data: dict[str, Any] = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine(),
            "settings": settings,
            "cells": {},
        }

    def load_cells(self) -> dict[str, Any]:
        """Cells of an earlier run of the same settings (to resume after an interruption)."""
        if not self.path.is_file():
            return {}
        old = json.loads(self.path.read_text())
        fixed = lambda settings: {k: v for k, v in settings.items() if k not in self.grid}  # noqa: E731
        if fixed(old.get("settings", {})) != fixed(self.data["settings"]):
            return {}
        if self.grid:  # one more run over the same file: keep every command that filled it
            self.data["commands"] = old.get("commands", [old["command"]]) + [self.data["command"]]
        return old.get("cells", {})

    def save(self) -> None:
        self.data["machine_at_end"] = {
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.replace(self.path)


def log(*parts) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}]", *parts, flush=True)
