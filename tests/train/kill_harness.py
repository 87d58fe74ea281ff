"""Kill harness: SIGKILL a tiny training run (and ``attentive average / merge / export``) at random
moments, then check that nothing on disk was lost or half-written.

A training run here is a 32-wide encoder-decoder on a reverse-copy task that checkpoints every
step and keeps two checkpoints, so most of its time is spent writing checkpoints and rotating
them: kills land inside those writes often. Half the kills are timed at random; the other half
wait until a temporary file or folder appears (a write has begun) and fire a few milliseconds
later, which puts them inside checkpoint writing, rotation or a command's output write on purpose.
Nothing in the package is instrumented: the phase a kill landed in is read afterwards from
what the folder holds.

After every kill of a run: the newest checkpoint loads (``attentive.load``), temporary folders
are not listed as checkpoints, every listed checkpoint is complete and readable, the metrics up
to that checkpoint equal an uninterrupted run's, and ``--resume`` (the next run of the chain)
continues; when the chain ends, the whole ``metrics.jsonl`` must equal the uninterrupted run's
losses bit for bit and the final weights must be identical.

Run as a script it is the child process: ``python kill_harness.py train OUT STEPS [--resume]``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
STEPS = 30  # steps of a full run
EVERY = 1  # checkpoint every step
KEEP = 2  # keep-last rotation: every save deletes one
WEIGHTS_FILES = ("config.json", "model.safetensors", "trainer_state.json", "trainer_state.safetensors")


# ----------------------------------------------------------------------------- the run itself


def tiny_task():
    from attentive.train.task import Task

    class CopyTask(Task):
        """Reverse-copy toy task (as in test_trainer.py), small so a step takes milliseconds."""

        name = "copy"

        def train_batches(self, epoch, rank=0, world_size=1):
            g = torch.Generator().manual_seed(epoch)
            data = torch.randint(4, 20, (6, 8, 6), generator=g)
            return [b[rank::world_size] for b in data]

        def count(self, batch):
            return batch.numel()

        def loss(self, model, batch):
            bos = torch.ones(batch.shape[0], 1, dtype=torch.long, device=batch.device)
            logits = model(batch, torch.cat([bos, batch[:, :-1]], dim=1))
            return F.cross_entropy(logits.flatten(0, 1), batch.flatten(), reduction="sum"), {}

        def evaluate(self, model):
            batch = self.train_batches(999)[0]
            return {"loss": self.loss(model, batch)[0].item() / self.count(batch)}

    return CopyTask()


def tiny_model():
    from attentive.models import EncoderDecoder, EncoderDecoderConfig

    torch.manual_seed(0)
    config = EncoderDecoderConfig(
        src_vocab_size=20,
        tgt_vocab_size=20,
        d_model=16,
        num_heads=2,
        d_ff=32,
        num_encoder_layers=1,
        num_decoder_layers=1,
        max_len=16,
        dropout=0.1,  # the RNG state must be resumed too
    )
    return EncoderDecoder(config)


def tiny_config(out, steps: int = STEPS, **overrides):
    from attentive.train.optim import OptimConfig
    from attentive.train.trainer import TrainConfig

    settings = dict(
        out_dir=str(out),
        max_steps=steps,
        log_every=1,
        eval_every=0,
        checkpoint_every=EVERY,
        keep_checkpoints=KEEP,
        progress=False,
        device="cpu",
        optim=OptimConfig(schedule="inverse_sqrt", lr=3e-3, warmup_steps=5),
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def train_tiny(out, steps: int = STEPS, resume: bool = False, **overrides):
    from attentive.train.trainer import train

    return train(tiny_task(), tiny_model(), tiny_config(out, steps, **overrides), resume=resume)


def _child(argv: list[str]) -> int:
    torch.set_num_threads(1)  # the parent's reference run uses one thread too: identical bits
    if argv[0] == "train":
        out, steps = argv[1], int(argv[2])
        print("ready", flush=True)
        train_tiny(out, steps, resume="--resume" in argv)
        return 0
    raise SystemExit(f"unknown child command {argv[0]!r}")


# ----------------------------------------------------------------------------- reading a run folder


def train_losses(out: Path) -> dict[int, float]:
    """step -> train loss from ``metrics.jsonl`` (torn lines skipped, as the loader does)."""
    import warnings

    from attentive.fileio import read_jsonl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = read_jsonl(out / "metrics.jsonl")
    losses: dict[int, float] = {}
    for r in records:
        if r.get("split") == "train":
            assert r["step"] not in losses, f"step {r['step']} logged twice in {out / 'metrics.jsonl'}"
            losses[r["step"]] = r["loss"]
    return losses


def temp_entries(folder: Path) -> list[str]:
    """Temporary files and folders (``*.tmp``) anywhere under ``folder``."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


def checkpoint_dirs_of(out: Path) -> list[Path]:
    from attentive.train.run_folder import checkpoint_dirs

    return checkpoint_dirs(out)


def checkpoint_entries(out: Path) -> set[str]:
    folder = out / "checkpoints"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def phase_of(out: Path, before: set[str] | None = None) -> str:
    """Where a kill landed, read from what the run folder holds just after it (``before``: the
    entries of ``checkpoints/`` when the killed process started)."""
    from attentive.train.run_folder import checkpoint_dirs

    ckpt = out / "checkpoints"
    names = checkpoint_entries(out)
    if not names or names == before:  # it wrote no checkpoint yet
        if out.exists() and any(p.name.endswith(".tmp") for p in out.iterdir()):
            return "run-folder-write"
        return "before-first-checkpoint"
    if any(n.endswith(".old.tmp") or n.endswith(".del.tmp") for n in names) or len(checkpoint_dirs(out)) > KEEP:
        return "rotation"
    tmp = [n for n in names if n.endswith(".tmp")]
    if tmp:
        inner = [p for p in (ckpt / tmp[0]).iterdir()] if (ckpt / tmp[0]).is_dir() else []
        return "checkpoint-write" if inner else "checkpoint-mkdir"
    if any(p.name.endswith(".tmp") for p in out.iterdir()):
        return "run-folder-write"  # top-level weights, metrics rewrite, train_config, results
    text = (out / "metrics.jsonl").read_bytes() if (out / "metrics.jsonl").exists() else b""
    if text and not text.endswith(b"\n"):
        return "metrics-append"
    return "training-step"


def check_after_kill(out: Path, reference: dict[int, float]) -> int:
    """The invariants a killed run folder must keep; the step of its newest checkpoint (0: none)."""
    import attentive
    from attentive.checkpoint import read_tensors
    from attentive.train.run_folder import checkpoint_dirs, checkpoint_step

    found = checkpoint_dirs(out)
    for path in found:  # every listed checkpoint is complete: a half-written one is never listed
        assert not path.name.endswith(".tmp"), path
        for name in WEIGHTS_FILES:
            assert (path / name).is_file(), f"listed checkpoint {path} lacks {name}"
        json.loads((path / "config.json").read_text())
        json.loads((path / "trainer_state.json").read_text())
        read_tensors(path / "trainer_state.safetensors")
    if not found:
        return 0
    newest = found[-1]
    attentive.load(newest)  # loadable
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        attentive.load(out)  # the run folder's own copy (absent after a kill inside the very first save)
    step = checkpoint_step(newest)
    losses = train_losses(out)
    for s in range(1, step + 1):  # everything up to the checkpoint was logged, and is the reference's
        assert losses.get(s) == reference[s], f"step {s}: {losses.get(s)} != reference {reference[s]}"
    return step


# ----------------------------------------------------------------------------- killing


def _popen(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


class Forked:
    """``fn()`` in a forked child process (no interpreter start, no imports: a kill cycle takes
    a fraction of a second); the ``subprocess.Popen`` calls the harness uses. What it prints (a
    traceback) goes to a log file that ``communicate`` returns and removes."""

    def __init__(self, fn):
        import tempfile

        torch.set_num_threads(1)  # no thread pool to break across the fork
        sys.stdout.flush()
        sys.stderr.flush()
        fd, self.log = tempfile.mkstemp(prefix="kill_harness_child.", suffix=".log")
        self.pid = os.fork()
        if self.pid == 0:  # the child: run, then leave without pytest's exit handlers
            code = 1
            try:
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                code = fn()
                code = code if isinstance(code, int) else 0
            except BaseException:
                import traceback

                os.write(fd, traceback.format_exc().encode())
            finally:
                os._exit(code)
        os.close(fd)
        self.returncode, self.text = None, None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                self._read_log()
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def wait(self):
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        self._read_log()
        return self.returncode

    def _read_log(self) -> None:
        """Once the child has ended: keep what it printed, remove the file."""
        if self.returncode is not None and self.text is None:
            log = Path(self.log)
            self.text = log.read_text(errors="replace") if log.exists() else ""
            log.unlink(missing_ok=True)

    def communicate(self):
        self.wait()
        return "", f"forked child exited with {self.returncode}\n{self.text}"


def start_training(out: Path, steps: int = STEPS, resume: bool = False, fork: bool = True):
    """The tiny run in a child process: forked (fast), or a fresh interpreter running this file."""
    if fork:
        return Forked(lambda: train_tiny(out, steps, resume=resume))
    argv = [sys.executable, str(HERE / "kill_harness.py"), "train", str(out), str(steps)]
    proc = _popen(argv + (["--resume"] if resume else []))
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.wait()
        raise RuntimeError(f"the training child did not start: {line}{proc.stderr.read()}")
    return proc


def kill_when(proc, watch: Path, rng: random.Random, window: float, on_temp: bool, skip: int = 0) -> bool:
    """SIGKILL ``proc``: after a random delay in ``[0, window)``, or (``on_temp``) a few
    milliseconds after the ``skip + 1``-th new ``*.tmp`` entry appears in the folder ``watch``.
    False if it had already ended."""
    deadline = time.monotonic() + (window * 3 if on_temp else rng.uniform(0, window))
    seen = _temp_names(watch)
    while time.monotonic() < deadline and proc.poll() is None:
        if on_temp:
            new = _temp_names(watch) - seen
            if new:
                if skip <= 0:
                    time.sleep(rng.uniform(0, 0.004))
                    break
                skip -= 1
                seen |= new
        time.sleep(0.0005 if on_temp else 0.002)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


def _temp_names(watch: Path) -> set[str]:
    try:
        return {name for name in os.listdir(watch) if name.endswith(".tmp")}
    except OSError:
        return set()


def kill_training_chain(
    out: Path, reference: dict[int, float], kills: int, rng: random.Random, window: float, fork: bool = True
):
    """Start, kill, check, resume, kill, ... ``kills`` times, then resume to the end. Returns one
    dict per kill attempt: its phase, the newest checkpoint step after it, and whether it landed."""
    from attentive.train.run_folder import checkpoint_dirs

    log = []
    done = 0
    while done < kills:
        resume, before = bool(checkpoint_dirs(out)), checkpoint_entries(out)
        proc = start_training(out, resume=resume, fork=fork)
        # half at random, half as the 1st to 3rd checkpoint write of this process begins
        landed = kill_when(proc, out / "checkpoints", rng, window, rng.random() < 0.5, skip=rng.randrange(3))
        if not landed:  # the run finished first: check it, then start again from scratch
            _drain(proc, check=True)
            for path in sorted(out.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            continue
        done += 1
        phase = phase_of(out, before)
        step = check_after_kill(out, reference)
        log.append({"phase": phase, "newest_step": step, "temp_left": len(temp_entries(out))})
    proc = start_training(out, resume=bool(checkpoint_dirs(out)), fork=fork)
    _drain(proc, check=True)
    return log


def _drain(proc, check: bool = False) -> None:
    """Wait for a child; ``check``: it must have succeeded (it was not killed)."""
    out, err = proc.communicate()
    if check and proc.returncode != 0:
        raise RuntimeError(f"run failed ({proc.returncode}):\n{err[-3000:]}")


def check_finished(out: Path, reference_dir: Path) -> None:
    """A chain resumed to the end equals the uninterrupted run: losses and final weights, exactly."""
    import attentive

    got, want = train_losses(out), train_losses(reference_dir)
    assert got == want, {s: (got.get(s), want.get(s)) for s in want if got.get(s) != want.get(s)}
    a, b = attentive.load(out).state_dict(), attentive.load(reference_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert not temp_entries(out), temp_entries(out)


def kill_command(argv: list[str], output: Path, rng: random.Random, window: float, on_temp: bool) -> str:
    """Run ``attentive ARGV`` in a forked child and SIGKILL it (after a random delay below
    ``window`` seconds, or as a temporary entry appears beside ``output``); where it landed:
    ``finished`` (it ended first), ``before-write``, ``mid-write`` or ``after-write``."""
    from attentive.cli.main import main

    proc = Forked(lambda: main(argv))
    landed = kill_when(proc, output.parent, rng, window, on_temp)
    _drain(proc, check=not landed)
    if not landed:
        return "finished"
    if output.exists():
        return "after-write"
    return "mid-write" if any(p.name.endswith(".tmp") for p in output.parent.iterdir()) else "before-write"


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
