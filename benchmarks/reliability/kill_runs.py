"""Kill runs: SIGKILL a tiny training run (and ``attentive average / merge / export``) many
times at random moments, inside checkpoint writing and rotation too, and count what survived.

The harness is ``tests/train/kill_harness.py`` (its docstring says what is checked after each
kill). Training kills come in chains: start, kill, check the folder, ``--resume``, kill, ...,
then resume to the end and compare the whole run with an uninterrupted one, bit for bit. Half
the kills are timed at random, half fire a few milliseconds after a temporary file or folder
appears (a write has begun). The phase of each kill is read from what the folder holds after it.
Results go to ``benchmarks/reliability/kill_runs.json``.

    .venv/bin/python benchmarks/reliability/kill_runs.py                  # 100 training kills + 30 command kills
    .venv/bin/python benchmarks/reliability/kill_runs.py --kills 20 --command-kills 6
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests" / "train"), str(ROOT / "tests")]

import torch  # noqa: E402

import context_common  # noqa: E402
import kill_harness as kh  # noqa: E402

OUT = Path(__file__).with_name("kill_runs.json")


def _failure(err: BaseException) -> str:
    """The error, and the line that raised it (a bare ``assert`` says nothing by itself)."""
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    line = f" at {Path(where.filename).name}:{where.lineno}: {where.line}" if where else ""
    return (traceback.format_exception_only(type(err), err)[-1].strip() + line)[:500]


def training_kills(work: Path, kills: int, per_chain: int, rng: random.Random, fork: bool):
    """``kills`` kills in chains of ``per_chain``; one row per kill, one per chain end."""
    reference = work / "reference"
    kh.train_tiny(reference)
    ref_losses = kh.train_losses(reference)
    window = 1.5 * _seconds_of_a_run(work)
    rows, chains = [], []
    chain = 0
    while len(rows) < kills:
        out = work / f"chain-{chain:03d}"
        chain += 1
        broken = None
        for _ in range(min(per_chain, kills - len(rows))):
            resume, before = bool(kh.checkpoint_dirs_of(out)), kh.checkpoint_entries(out)
            on_temp = rng.random() < 0.5
            proc = kh.start_training(out, resume=resume, fork=fork)
            landed = kh.kill_when(proc, out / "checkpoints", rng, window, on_temp, skip=rng.randrange(3))
            if not landed:  # it ended before the kill
                if proc.wait() != 0:
                    chains.append({"chain": chain, "resumed_to_end": False, "failure": proc.communicate()[1][-500:]})
                shutil.rmtree(out, ignore_errors=True)  # a finished run: start this chain again
                continue
            row = {"chain": chain, "trigger": "temp-file" if on_temp else "random", "phase": kh.phase_of(out, before)}
            row["temp_left"] = len(kh.temp_entries(out))
            try:
                row["newest_step"] = kh.check_after_kill(out, ref_losses)
                row["survived"] = True
            except Exception as err:  # noqa: BLE001 - recorded, the chain ends
                row["survived"], row["failure"] = False, _failure(err)
                broken = err
            rows.append(row)
            if broken:
                break
        end = {"chain": chain, "resumed_to_end": False}
        if not broken:
            try:
                proc = kh.start_training(out, resume=bool(kh.checkpoint_dirs_of(out)), fork=fork)
                if proc.wait() != 0:
                    raise RuntimeError(f"the final --resume failed: {proc.communicate()[1][-400:]}")
                kh.check_finished(out, reference)
                end["resumed_to_end"] = True
            except Exception as err:  # noqa: BLE001
                end["failure"] = _failure(err)
        chains.append(end)
        shutil.rmtree(out, ignore_errors=True)
    return rows, chains


def _seconds_of_a_run(work: Path) -> float:
    t0 = time.perf_counter()
    kh.train_tiny(work / "timing")
    shutil.rmtree(work / "timing")
    return time.perf_counter() - t0


def command_kills(work: Path, per_command: int, rng: random.Random):
    from chat_helpers import chat_model, chat_tokenizer

    import attentive
    from attentive.cli.main import main
    from attentive.lora import LoRAConfig, add_lora, save_adapter

    kh.train_tiny(work / "avg-run")
    ckpts = [str(p) for p in kh.checkpoint_dirs_of(work / "avg-run")]
    base, lora = work / "base", work / "lora"
    attentive.interop.pretrained.Pretrained(chat_model(), chat_tokenizer(), "", "attentive").save(base)
    save_adapter(lora, add_lora(chat_model(), LoRAConfig(rank=4, alpha=8, targets=("q_proj",)), base=str(base)))
    rows = []
    for name, args in (
        ("average", ["average", *ckpts]),
        ("merge", ["merge", "--adapter", str(lora)]),
        ("export-hf", ["export", str(base), "--to", "hf"]),
        ("export-gguf", ["export", str(base), "--to", "gguf"]),
    ):
        target = work / "want" / name
        t0 = time.perf_counter()
        suffix = ".gguf" if name == "export-gguf" else ""
        assert main([*args, "--out", str(target) + suffix]) == 0
        seconds = time.perf_counter() - t0
        want = _contents(Path(str(target) + suffix))
        for i in range(per_command):
            out = work / f"{name}-{i}" / ("out" + suffix)
            out.parent.mkdir(parents=True)
            on_temp = i % 2 == 0
            try:
                phase = kh.kill_command([*args, "--out", str(out)], out, rng, seconds, on_temp)
            except RuntimeError as err:  # it ended before the kill, and failed
                rows.append({"command": name, "phase": "finished", "survived": False, "failure": _failure(err)})
                continue
            row = {"command": name, "trigger": "temp-file" if on_temp else "random", "phase": phase}
            if phase == "finished":
                continue
            row["output"] = "whole" if out.exists() else "absent"
            row["survived"] = not out.exists() or _contents(out) == want
            if not row["survived"]:
                row["failure"] = f"{out} exists but differs from the uninterrupted output"
            rows.append(row)
    return rows


def _contents(path: Path) -> dict[str, bytes]:
    """Every file of an output (a folder or one file), by relative name."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="training kills")
    parser.add_argument("--per-chain", type=int, default=5, help="kills of one run before it resumes to the end")
    parser.add_argument("--command-kills", type=int, default=30, help="kills of average / merge / export, in all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spawn", action="store_true", help="fresh interpreters instead of forked children")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kill_runs.") as tmp:
        work = Path(tmp)
        rows, chains = training_kills(work / "train", args.kills, args.per_chain, rng, fork=not args.spawn)
        commands = command_kills(work / "commands", max(1, args.command_kills // 4), rng)
    by_phase = collections.Counter(r["phase"] for r in rows)
    survived_by_phase = collections.Counter(r["phase"] for r in rows if r["survived"])
    cmd_by = collections.Counter((r["command"], r["phase"]) for r in commands)
    cmd_ok = collections.Counter((r["command"], r["phase"]) for r in commands if r["survived"])
    failures = [r for r in rows if not r["survived"]] + [c for c in chains if not c["resumed_to_end"]]
    failures += [r for r in commands if not r["survived"]]
    result = {
        "command": "python " + " ".join([str(Path(sys.argv[0]).resolve().relative_to(ROOT)), *sys.argv[1:]]),
        "commit": context_common.git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": context_common.machine(),
        "torch": torch.__version__,
        "figures": {
            "training_kills": len(rows),
            "training_kills_survived": sum(r["survived"] for r in rows),
            "training_kills_inside_checkpoint_write_or_rotation": sum(
                n for p, n in by_phase.items() if p in ("checkpoint-write", "checkpoint-mkdir", "rotation")
            ),
            "chains": len(chains),
            "chains_resumed_to_identical_result": sum(c["resumed_to_end"] for c in chains),
            "command_kills": len(commands),
            "command_kills_survived": sum(r["survived"] for r in commands),
            "command_kills_mid_write": sum(r["phase"] == "mid-write" for r in commands),
            "kills": len(rows) + len(commands),
            "survived": sum(r["survived"] for r in rows) + sum(r["survived"] for r in commands),
            "failures": len(failures),
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "tables": {
            "training_kills_by_phase": {
                "columns": ["phase", "kills", "survived"],
                "rows": [[p, n, survived_by_phase[p]] for p, n in sorted(by_phase.items())],
            },
            "command_kills_by_phase": {
                "columns": ["command", "phase", "kills", "survived"],
                "rows": [[c, p, n, cmd_ok[(c, p)]] for (c, p), n in sorted(cmd_by.items())],
            },
        },
        "failure_details": failures[:50],
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["figures"], indent=2))


if __name__ == "__main__":
    main()
