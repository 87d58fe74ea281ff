"""Time the Tour's demos (docs/tour.md) once each, as a reader would run them, and write
``benchmarks/tour/tour.json`` (provenance, one row per demo, what each printed).

    python benchmarks/tour/time_tour.py                 # every demo (the training one takes minutes)
    python benchmarks/tour/time_tour.py --skip-train    # the sub-minute ones only

Each demo is the page's command, run in a fresh process (so its time includes starting Python,
importing torch and loading the model), in an empty folder. The load average before and after
each is recorded: on a shared machine a timing is only as good as the quiet around it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))  # context_common: the machine and commit, as every benchmark records them
ATTENTIVE = str(Path(sys.executable).parent / "attentive")
OUT = Path(__file__).resolve().parent / "tour.json"

SENTENCES = ["A man is eating food.", "Someone is eating a meal.", "The sky is blue."]
CLIP_TEXT = "The quick brown fox jumps over the lazy dog."
EXPLORE_TEXT = "The cat sat on the mat because it was tired."
SOURCES = ["Ein Hund rennt durch den Park.", "Zwei Männer spielen Fußball."]

DEMOS = [  # (name, what, argv); ATTENTIVE is the installed command
    ("embed", "sentence similarities with MiniLM", ["attentive", "embed", "--model", "minilm", *SENTENCES]),
    (
        "chat",
        "a chat reply from SmolLM2",
        ["attentive", "generate", "--model", "smollm2", "--chat", "Write one sentence about the sea."],
    ),
    ("speak", "a clip spoken by espeak-ng", ["espeak-ng", "-w", "clip.wav", CLIP_TEXT]),
    (
        "transcribe",
        "Whisper tiny.en on the clip",
        ["attentive", "transcribe", "--model", "whisper-tiny.en", "clip.wav"],
    ),
    (
        "explore",
        "the explorer as one HTML file",
        ["attentive", "explore", "--model", "minilm", "--export", "minilm.html", EXPLORE_TEXT],
    ),
    (
        "train",
        "train a translator for 2 minutes",
        [
            "attentive",
            "train",
            "--recipe",
            "multi30k-de-en",
            "--max-minutes",
            "2",
            "--out",
            "runs/tour-de-en",
            "warmup_steps=100",
            "test_limit=200",
        ],
    ),
    ("translate", "translate with it", ["attentive", "translate", "--model", "runs/tour-de-en", *SOURCES]),
]
SERVE = ["attentive", "serve", "--model", "smollm2"]  # timed to its first chat reply (see serve_demo)
CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 40}


def machine() -> str:
    from context_common import machine as cpu_machine

    cpu = cpu_machine()
    return f"{cpu['cores']}-core {cpu['cpu']} (shared), no GPU"


def serve_demo(work: str) -> tuple[float, float, str]:
    """Start ``attentive serve --model smollm2`` (on a free port), wait for ``/health``, send one chat
    request as the ``openai`` client would; (seconds to ready, seconds to the reply, the reply)."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    server = subprocess.Popen(
        [ATTENTIVE, *SERVE[1:], "--port", str(port)], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"serve: exited early:\n{server.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        ready = time.perf_counter() - start
        request = urllib.request.Request(
            f"{base}/v1/chat/completions", json.dumps(CHAT).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=300) as answer:
            reply = json.loads(answer.read())["choices"][0]["message"]["content"]
        return ready, time.perf_counter() - start, reply
    finally:
        server.terminate()
        server.wait(30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-train", action="store_true", help="leave out the training and translation demos")
    p.add_argument("--skip-serve", action="store_true", help="leave out the server demo")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()

    import torch

    from context_common import git_commit

    commit = git_commit()
    rows, figures, printed, loads = [], {}, {}, {}
    with tempfile.TemporaryDirectory() as work:
        for name, what, argv in DEMOS:
            if args.skip_train and name in ("train", "translate"):
                continue
            run = [ATTENTIVE, *argv[1:]] if argv[0] == "attentive" else argv
            before = os.getloadavg()[0]
            start = time.perf_counter()
            done = subprocess.run(run, cwd=work, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode:
                raise SystemExit(f"{name}: {shlex.join(argv)} failed:\n{done.stderr[-2000:]}")
            print(f"{name}: {wall:.1f} s", flush=True)
            figures[f"{name}_s"] = wall
            loads[name] = [before, os.getloadavg()[0]]
            printed[name] = (done.stdout.strip() or done.stderr.strip()).splitlines()[-12:]
            rows.append([what, f"`{shlex.join(argv)}`", wall])
        if not args.skip_serve:
            before = os.getloadavg()[0]
            ready, wall, reply = serve_demo(work)
            print(f"serve: ready {ready:.1f} s, first reply {wall:.1f} s", flush=True)
            figures["serve_ready_s"], figures["serve_s"] = ready, wall
            loads["serve"] = [before, os.getloadavg()[0]]
            printed["serve"] = [reply]
            rows.append(["serve SmolLM2, first chat reply", f"`{shlex.join(SERVE)}`", wall])
        results = Path(work, "runs/tour-de-en/results.json")
        if results.exists():
            data = json.loads(results.read_text())
            for split in ("test_2016_flickr", "test_2017_flickr"):
                if split in data:
                    figures[f"train_bleu_{split}"] = data[split]["bleu"]
            figures["train_steps"] = data.get("step")

    result = {
        "command": "python benchmarks/tour/time_tour.py" + (" --skip-train" if args.skip_train else ""),
        "commit": commit,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "torch": torch.__version__,
        "source": "measured by benchmarks/tour/time_tour.py: each demo of docs/tour.md once, a fresh process "
        "in an empty folder (start-up, imports and model loading included)",
        "load_average": loads,
        "printed": printed,
        "figures": figures,
        "tables": {
            "demos": {
                "columns": ["demo", "command", "wall time (s)"],
                "rows": rows,
                "formats": [None, None, "{:.1f}"],
            }
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
