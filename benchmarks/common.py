"""What every benchmark shares: arguments, timing, peak memory, MFU, tables and result files.

Rules the numbers follow, whatever is measured:

* warm-up runs (compilation, autotuning, allocator growth) are excluded; the figure reported is
  the median of several timed runs, each ended by a device synchronisation;
* peak memory is measured over one extra, untimed call (``measure_peak``), so the sampling
  that CPU needs never slows a timed run: on CUDA ``max_memory_allocated`` (tensors, not the
  allocator's cache); on CPU the peak of live C-heap bytes (see ``PeakMemory``);
* every contestant runs in the same process, one after another, each in a ``try`` so a peer
  that fails (or is not installed) leaves a row saying why, not a lost table;
* results are written after every contestant (``<name>.json`` and ``<name>.md`` in the output
  folder: ``--out``, else ``$OUT``, else ``benchmarks/results``), so a run cut short by a
  timeout still leaves what it measured;
* every result file says where its numbers come from, at its top level: ``command`` (this
  process's command line), ``commit`` (the checkout's, ``-dirty`` when tracked files differ),
  ``date``, ``machine`` (CPU model, cores, GPU) and ``torch``, the keys the documentation's
  stamp reads (``attentive.figures.provenance``).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from attentive.nn.loss import release_workspace
from attentive.train.throughput import PEAK_BF16_FLOPS, transformer_flops_per_token  # noqa: F401  (6N + 12 L d T, for MFU)

OURS = "attentive"


# ----------------------------------------------------------------------------- arguments


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    p.add_argument("--small", action="store_true", help="the small configs (default on CPU)")
    p.add_argument("--full", action="store_true", help="the full configs (default on CUDA)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per contestant (median reported)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (compilation happens here)")
    p.add_argument("--only", default=None, help="comma-separated substrings: run only matching contestants")
    p.add_argument("--skip", default=None, help="comma-separated substrings: skip matching contestants")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--out", default=None, help="output folder (default $OUT, else benchmarks/results)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--tag", default="", help="suffix for the result files' names (several runs, one folder)")
    return p


def setup(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve defaults that depend on the device; seed; pick fast matmul settings."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if args.small and args.full:
        raise SystemExit("--small and --full exclude each other")
    args.small = args.small or (not args.full and args.device == "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or os.environ.get("OUT") or str(Path(__file__).parent / "results")
    args.out = Path(out)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls on tensor cores (only CUDA fp32 peers)
    torch.backends.cudnn.allow_tf32 = True
    global _HEAP_BASELINE
    gc.collect()
    _HEAP_BASELINE = _live_heap_bytes() or 0  # CPU peaks are counted above what imports hold
    return args


def selected(args: argparse.Namespace, name: str) -> bool:
    if args.no_compile and "compile" in name:
        return False
    if args.skip and any(s.strip() and s.strip() in name for s in args.skip.split(",")):
        return False
    return not args.only or any(s.strip() and s.strip() in name for s in args.only.split(","))


# ----------------------------------------------------------------------------- device helpers


CLIP_TEXTS = {  # espeak-ng at its default 175 words a minute
    "5 s": "The quick brown fox jumps over the lazy dog near the river bank.",
    "20 s": (
        "Speech recognition turns spoken words into text. A model listens to the sound, finds the "
        "words in it, and writes them down one after another. Good systems work in noisy rooms, "
        "with many voices, and with people who speak quickly or quietly."
    ),
    "30 s": (
        "The history of the Roman Empire spans many centuries. It began when Augustus became the first "
        "emperor in twenty seven before Christ and, in the West, ended four hundred and seventy six "
        "years after. During this time the empire grew to include the lands around the Mediterranean "
        "Sea, and its roads, its laws and its language shaped Europe for the next thousand years."
    ),
}


def speech_clips(folder: Path, texts: dict[str, str] = CLIP_TEXTS) -> dict[str, tuple[torch.Tensor, float]]:
    """name -> (log-Mel features (80, 3000), seconds of speech): each text spoken by espeak-ng into
    a WAV file in ``folder``, the Whisper benchmarks' clips."""
    from attentive.audio import SAMPLE_RATE, log_mel_spectrogram, read_wav, resample

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    clips = {}
    for name, text in texts.items():
        wav = folder / f"clip_{name.split()[0]}.wav"
        subprocess.run([espeak, "-w", str(wav), text], check=True)
        audio, rate = read_wav(wav)
        samples = resample(audio, rate, SAMPLE_RATE)
        seconds = len(samples) / SAMPLE_RATE
        if seconds > 30:
            raise RuntimeError(f"clip {name!r} is {seconds:.1f} s, over Whisper's 30 s window: shorten its text")
        clips[name] = (log_mel_spectrogram(samples), seconds)
    return clips


def word_differences(a: str, b: str) -> int:
    """Words of ``a`` and ``b`` that differ (edit distance over words): how far two transcripts are."""
    x, y = a.split(), b.split()
    prev = list(range(len(y) + 1))
    for i, wx in enumerate(x, 1):
        cur = [i]
        for j, wy in enumerate(y, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (wx != wy)))
        prev = cur
    return prev[-1]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


REPO = Path(__file__).resolve().parent.parent


def command_line() -> str:
    """This process's command, as a reader would type it (``python benchmarks/bench_x.py ...``)."""
    return " ".join([Path(sys.executable).name, *sys.argv])


def machine(device: str) -> dict[str, Any]:
    """CPU model, cores, threads, memory, load (``context_common.machine``) and the GPU, if used."""
    from context_common import machine as cpu_machine

    return {**cpu_machine(), "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}


def provenance(device: str) -> dict[str, Any]:
    """The top-level keys every result file carries: command, commit, date, machine, torch."""
    from context_common import git_commit

    return {
        "command": command_line(),
        "commit": git_commit(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(device),
        "torch": torch.__version__,
    }


def peak_flops(device: str) -> float | None:
    """The bf16 dense peak MFU is held against (the trainer's table), None on CPU."""
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def read_bandwidth(device: str, mib: int = 512, runs: int = 5) -> float:
    """Bytes per second a full read of a large tensor reaches (best of ``runs``): the ceiling for
    work that must stream every weight once, like decoding one token at batch 1."""
    x = torch.ones(mib * 2**20 // 4, device=device)
    best = float("inf")
    for _ in range(runs + 1):  # the first pass warms the pages
        sync(device)
        t0 = time.perf_counter()
        x.sum()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    del x
    return mib * 2**20 / best


def free_memory(device: str) -> None:
    """Between contestants: nothing one leaves behind (compiled graphs, attentive's CPU loss
    buffer, cached CUDA blocks) counts against the next."""
    release_workspace()
    gc.collect()
    torch._dynamo.reset()
    if device == "cuda":
        torch.cuda.empty_cache()


_HEAP_BASELINE = 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _live_heap_bytes() -> int | None:
    """Bytes the C heap holds for live allocations (glibc ``mallinfo2``): CPU tensors included."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


class PeakMemory:
    """Peak memory over a block, counted the same way for every contestant.

    CUDA: ``max_memory_allocated`` (live tensors, not the allocator's cache). CPU: the peak of
    live C-heap bytes (glibc ``mallinfo2``) above what the process held after its imports,
    sampled every half millisecond by a thread; freed
    memory does not count, so what an earlier contestant left in the allocator does not hide
    what a later one needs. Both include weights, gradients and optimizer state.
    """

    def __init__(self, device: str):
        self.device, self.bytes = device, None

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        gc.collect()
        self._peak = _live_heap_bytes()
        if self._peak is not None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.0005):
            self._peak = max(self._peak, _live_heap_bytes())

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated()
        elif self._peak is not None:
            self._stop.set()
            self._thread.join()
            self.bytes = max(self._peak, _live_heap_bytes()) - _HEAP_BASELINE


def measure_peak(fn: Callable[[], Any], device: str) -> int | None:
    """Peak memory (bytes) of one call of ``fn``."""
    with PeakMemory(device) as mem:
        fn()
        sync(device)
    return mem.bytes


def time_runs(fn: Callable[[], Any], device: str, warmup: int, runs: int) -> list[float]:
    """Seconds per call of ``fn`` over ``runs`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(runs):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


# ----------------------------------------------------------------------------- results


@dataclass
class Row:
    """One contestant's measurement."""

    name: str  # e.g. "attentive (compiled)"
    impl: str  # attentive | hf | x-transformers | torch.nn | sdpa ...
    mode: str = ""  # eager | compiled | cuda-graph ... (ratios pair rows of the same mode)
    seconds: float | None = None  # median per call
    work: float | None = None  # units per call (tokens, sequences)
    unit: str = "tok"
    peak_bytes: int | None = None
    flops_per_unit: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        return self.work / self.seconds if self.seconds and self.work else None


class Report:
    """Collects rows, prints the table, writes JSON + markdown after every row."""

    def __init__(self, name: str, title: str, args: argparse.Namespace, config: dict[str, Any]):
        name = f"{name}_{args.tag}" if getattr(args, "tag", "") else name
        self.name, self.title, self.args, self.config = name, title, args, config
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.extra_md: list[str] = []  # more markdown after the table (e.g. a summary by length)
        self.peer_filter: Callable[[Row, Row], bool] | None = None  # which peers a row is compared with
        self.peak = peak_flops(args.device)
        self.provenance = provenance(args.device)  # command, commit, machine: fixed for the run

    def run(self, name: str, impl: str, mode: str, measure: Callable[[], Row]) -> Row | None:
        """Run one contestant (``measure`` returns its Row) unless deselected; keep going on errors."""
        if not selected(self.args, name):
            return None
        print(f"[{self.name}] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            row = measure()
        except Exception as err:  # a failing peer must not sink the table
            traceback.print_exc()
            first_line = str(err).splitlines()[0][:160] if str(err) else ""
            row = Row(name, impl, mode, error=f"{type(err).__name__}: {first_line}")
        row.name, row.impl, row.mode = name, impl, mode
        row.extra.setdefault("wall_s", round(time.perf_counter() - t0, 1))
        self.rows.append(row)
        free_memory(self.args.device)
        self.write()
        status = row.error or f"{fmt_rate(row.rate, row.unit)}  {fmt_ms(row.seconds)}  {fmt_bytes(row.peak_bytes)}"
        print(f"[{self.name}] {name}: {status}", flush=True)
        return row

    def ratios(self, row: Row) -> str:
        """This row's speed over each peer's, same mode first; '' for peers' rows."""
        if row.impl != OURS or row.rate is None:
            return ""
        parts = []
        for other in self.rows:
            if other.impl == OURS or other.rate is None:
                continue
            if self.peer_filter is not None and not self.peer_filter(row, other):
                continue
            if other.mode == row.mode or not row.mode:
                parts.append(f"{row.rate / other.rate:.2f}x {other.name}")
        return ", ".join(parts)

    def best_ratios(self) -> list[str]:
        """Best of ours over the best of each peer (whatever the mode)."""
        ours = [r for r in self.rows if r.impl == OURS and r.rate]
        if not ours:
            return []
        best = max(ours, key=lambda r: r.rate)
        lines = []
        for impl in dict.fromkeys(r.impl for r in self.rows if r.impl != OURS):
            peers = [r for r in self.rows if r.impl == impl and r.rate]
            if peers:
                p = max(peers, key=lambda r: r.rate)
                lines.append(f"best {OURS} ({best.name}) / best {impl} ({p.name}): {best.rate / p.rate:.2f}x")
        return lines

    def markdown(self) -> str:
        unit = next((r.unit for r in self.rows), "tok")
        head = f"| contestant | {unit}/s | ms / call | peak memory | "
        head += "MFU | " if self.peak else ""
        head += "ratio (ours / peer, same mode) |"
        lines = [f"### {self.title}", "", self._environment(), "", head, "|" + "---|" * (head.count("|") - 1)]
        for r in self.rows:
            if r.error:
                cells = [r.name, "failed", "", "", *([""] if self.peak else []), r.error.replace("|", "/")]
            else:
                cells = [r.name, fmt_rate(r.rate, ""), fmt_ms(r.seconds), fmt_bytes(r.peak_bytes)]
                if self.peak:
                    cells.append(f"{r.rate * r.flops_per_unit / self.peak:.1%}" if r.flops_per_unit and r.rate else "")
                cells.append(self.ratios(r))
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + [f"- {line}" for line in self.best_ratios() + self.notes] + self.extra_md
        return "\n".join(lines) + "\n"

    def _environment(self) -> str:
        a = self.args
        cfg = ", ".join(f"{k}={v}" for k, v in self.config.items())
        peak = f"; MFU against {self.peak / 1e12:.0f} TFLOP/s bf16" if self.peak else ""
        return (
            f"{device_name(a.device)}; torch {torch.__version__}; {datetime.date.today().isoformat()}; "
            f"{'small' if a.small else 'full'} config: {cfg}{peak}"
        )

    def write(self) -> None:
        data = {
            "benchmark": self.name,
            "title": self.title,
            **self.provenance,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "device": device_name(self.args.device),
            "small": self.args.small,
            "config": self.config,
            "peak_flops": self.peak,
            "notes": self.notes,
            "rows": [{**asdict(r), "rate": r.rate} for r in self.rows],
        }
        (self.args.out / f"{self.name}.json").write_text(json.dumps(data, indent=1, default=str))
        (self.args.out / f"{self.name}.md").write_text(self.markdown())

    def finish(self) -> None:
        self.write()
        print()
        print(self.markdown(), flush=True)


# ----------------------------------------------------------------------------- formatting


def fmt_rate(rate: float | None, unit: str = "tok") -> str:
    if rate is None:
        return ""
    suffix = f" {unit}/s" if unit else ""
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M{suffix}"
    if rate >= 1e4:
        return f"{rate / 1e3:.1f}k{suffix}"
    return f"{rate:,.1f}{suffix}"


def fmt_ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:,.2f}"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def median(times: list[float]) -> float:
    return statistics.median(times)


def count_params(model: torch.nn.Module) -> int:
    """Parameters counted once each (tied matrices once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
