"""Data-parallel training under torchrun (gloo on CPU): DDP and FSDP2 match one process, resume
across world sizes, and a run killed mid-way restarts from its last complete checkpoint.

Two ranks each take half of every global batch (rows ``r::2``), so 2 x (B/2) sees exactly what
1 x B sees: with dropout off and fp32, parameters agree to float rounding. This file is also
the worker that ``torchrun`` starts (``python -m torch.distributed.run ... test_distributed.py
SCENARIO DIR``); each launch combines several checks, because a launch costs seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import attentive
from attentive.train.task import Task
from attentive.train.distributed import DistContext
from attentive.train.optim import OptimConfig
from attentive.train.run_folder import checkpoint_dirs
from attentive.train.trainer import TrainConfig, train

GLOBAL_BATCH, LENGTH, VOCAB, BATCHES_PER_EPOCH = 8, 6, 20, 10
TOL = 1e-5


class ShardedCopyTask(Task):
    """Copy task with a fixed global batch; rank r of w takes rows r::w of each global batch."""

    name = "copy"

    def __init__(self, fault: str | None = None):
        self.fault = fault  # crash scenario only: which process kills itself, and where
        self.loss_calls = 0

    def train_batches(self, epoch, rank=0, world_size=1):
        g = torch.Generator().manual_seed(1000 + epoch)
        data = torch.randint(4, VOCAB, (BATCHES_PER_EPOCH, GLOBAL_BATCH, LENGTH), generator=g)
        return [b[rank::world_size] for b in data]

    def count(self, batch):
        return batch.numel()

    def loss(self, model, batch):
        self.loss_calls += 1
        if self.fault == "rank1-mid-step" and self.loss_calls == 6 and _rank() == 1:  # resumed at 4: step 10
            os.kill(os.getpid(), signal.SIGKILL)  # a worker dies in the middle of a step
        bos = torch.ones(batch.shape[0], 1, dtype=torch.long, device=batch.device)
        logits = model(batch, torch.cat([bos, batch[:, :-1]], dim=1))
        return F.cross_entropy(logits.flatten(0, 1), batch.flatten(), reduction="sum"), {}

    def evaluate(self, model):
        batch = self.train_batches(999)[0]
        loss, _ = self.loss(model, batch)
        return {"loss": loss.item() / self.count(batch)}

    def save_artifacts(self, directory):
        # rank 0 calls this after model.safetensors, before the trainer state: dying here leaves
        # a half-written step-0000008.tmp
        if self.fault == "rank0-mid-write" and Path(directory).name.startswith("step-0000008"):
            os.kill(os.getpid(), signal.SIGKILL)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _model():
    # no biases: a key-projection bias has an exactly-zero gradient (softmax ignores a constant
    # per row), so Adam would turn its rounding noise into full-size steps that differ per run
    torch.manual_seed(0)
    return attentive.build(
        "transformer-tiny",
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        d_model=32,
        num_heads=4,
        d_ff=64,
        max_len=16,
        dropout=0.0,
        attention_dropout=0.0,
        bias=False,
    )


def _config(out, steps, **kw):
    kw = {"log_every": 1, "eval_every": 10, "checkpoint_every": 10, "grad_accum": 2, **kw}
    optim = OptimConfig(schedule="inverse_sqrt", lr=3e-3, warmup_steps=5)
    return TrainConfig(out_dir=str(out), max_steps=steps, progress=False, device="cpu", optim=optim, **kw)


def _losses(out):
    records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]


def _train_steps(out):
    records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in records if r["split"] == "train"]


def _max_diff(a, b) -> float:
    wa, wb = attentive.load(a).state_dict(), attentive.load(b).state_dict()
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def _torchrun(scenario: str, out: Path, fault: str = "none", expect_ok: bool = True) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "--monitor-interval=0.1",
        __file__,
        scenario,
        str(out),
        fault,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    log = f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    assert (done.returncode == 0) == expect_ok, f"torchrun {scenario} {fault}: exit {done.returncode}\n{log}"


# ----------------------------------------------------------------------------- workers (under torchrun)
def _worker_parity(out: Path, ctx: DistContext, fault: str) -> None:
    """DDP, DDP + activation checkpointing, FSDP from scratch; DDP resuming a 1-process checkpoint."""
    train(ShardedCopyTask(), _model(), _config(out / "ddp", 20), dist=ctx)
    train(ShardedCopyTask(), _model(), _config(out / "ddp_ac", 20, activation_checkpointing=True), dist=ctx)
    train(ShardedCopyTask(), _model(), _config(out / "fsdp", 20, strategy="fsdp"), dist=ctx)
    train(ShardedCopyTask(), _model(), _config(out / "from1", 20), resume=True, dist=ctx)


def _worker_crash(out: Path, ctx: DistContext, fault: str) -> None:
    """FSDP + activation checkpointing, 12 steps, a checkpoint every 4, resuming from the newest."""
    run = out / "crash"
    found = checkpoint_dirs(run)
    if ctx.is_main:
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "attempts.txt", "a") as f:
            f.write(f"{fault} {found[-1].name if found else 'none'}\n")
    cfg = _config(
        run, 12, strategy="fsdp", activation_checkpointing=True, grad_accum=1, checkpoint_every=4, eval_every=0
    )
    train(ShardedCopyTask(fault=fault), _model(), cfg, resume=True, dist=ctx)


# one tiny configuration per task family: the real recipes (data, batching, loss, evaluation), small
_COMMON = {
    "max_steps": 4,
    "max_minutes": None,
    "device": "cpu",
    "progress": False,
    "log_every": 1,
    "eval_every": 0,
    "checkpoint_every": 4,
    "warmup_steps": 2,
}
RECIPE_FAMILIES = {
    "multi30k-de-en": {
        "train_limit": 200,
        "valid_limit": 16,
        "test": "",
        "vocab_size": 300,
        "d_model": 32,
        "num_heads": 2,
        "d_ff": 64,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "max_tokens": 400,
        "val_bleu_sentences": 0,
        "average_last": 0,
    },
    "shakespeare-char": {
        "num_layers": 1,
        "d_model": 32,
        "num_heads": 2,
        "d_ff": 64,
        "block_size": 32,
        "batch_size": 8,
        "eval_tokens": 500,
        "precision": "fp32",
    },
    "vit-mnist": {
        "patch_size": 7,
        "num_layers": 1,
        "d_model": 32,
        "num_heads": 2,
        "d_ff": 64,
        "batch_size": 16,
        "train_limit": 200,
        "val_size": 50,
        "test_limit": 50,
    },
    "dt-cartpole": {
        "episodes_per_policy": 2,
        "num_layers": 1,
        "d_model": 32,
        "d_ff": 64,
        "num_heads": 2,
        "context_len": 5,
        "batch_size": 8,
        "eval_episodes": 1,
        "periodic_eval_episodes": 1,
        "targets": (500.0,),
    },
}


def _tensors(batch) -> list[torch.Tensor]:
    """Every tensor in a batch: a tensor, a tuple / list / dict, or a dataclass of them."""
    import dataclasses

    if torch.is_tensor(batch):
        return [batch]
    if dataclasses.is_dataclass(batch):
        batch = [getattr(batch, f.name) for f in dataclasses.fields(batch)]
    elif isinstance(batch, dict):
        batch = list(batch.values())
    return [
        t
        for item in batch
        if isinstance(item, (torch.Tensor, tuple, list, dict)) or dataclasses.is_dataclass(item)
        for t in _tensors(item)
    ]


def _first_batch_digest(batch) -> str:
    import hashlib

    return hashlib.sha1(b"".join(t.cpu().numpy().tobytes() for t in _tensors(batch))).hexdigest()


def _worker_recipes(out: Path, ctx: DistContext, fault: str) -> None:
    """Each task family's recipe under DDP (every rank notes the digest of its first batch), then
    the LM with its fused loss under DDP and under FSDP."""
    from attentive.recipes import get_recipe

    digests = {}
    for name, overrides in RECIPE_FAMILIES.items():
        recipe = get_recipe(name).build({**_COMMON, **overrides, "out_dir": str(out / name)})
        digests[name] = _first_batch_digest(recipe.task.train_batches(0, ctx.rank, ctx.world_size)[0])
        train(recipe.task, recipe.model, recipe.train_config, dist=ctx)
    # the fused LM loss applies the head outside forward: DDP must still average its gradient
    # (under FSDP the head's weight is a shard between forwards, so the loss falls back to plain)
    for tag, extra in (("lm-fused", {}), ("lm-fused-fsdp", {"strategy": "fsdp"})):
        recipe = get_recipe("shakespeare-char").build(
            {**_COMMON, **RECIPE_FAMILIES["shakespeare-char"], "loss": "fused", "out_dir": str(out / tag), **extra}
        )
        train(recipe.task, recipe.model, recipe.train_config, dist=ctx)
    (out / f"digests-rank{ctx.rank}.json").write_text(json.dumps(digests))


def _worker_main(scenario: str, out: str, fault: str) -> None:
    torch.set_num_threads(1)
    ctx = DistContext.from_env("cpu")
    try:
        {"parity": _worker_parity, "crash": _worker_crash, "recipes": _worker_recipes}[scenario](Path(out), ctx, fault)
    finally:
        ctx.close()


# ----------------------------------------------------------------------------- tests
def test_two_ranks_match_one_process_and_resume_across_world_sizes(tmp_path):
    ref = tmp_path / "ref"
    train(ShardedCopyTask(), _model(), _config(ref, 20))
    # a 1-process run stopped at step 10, for the 2-rank DDP launch to resume (1 -> 2)
    train(ShardedCopyTask(), _model(), _config(tmp_path / "from1", 10))
    _torchrun("parity", tmp_path)

    # 2 x (B/2) == 1 x B, with gradient accumulation (no_sync on the first micro-batch)
    for run in ("ddp", "ddp_ac", "fsdp", "from1"):
        assert _max_diff(ref, tmp_path / run) <= TOL, run
        assert _train_steps(tmp_path / run) == list(range(1, 21)), run  # rank 0 alone logs
        assert _losses(tmp_path / run) == pytest.approx(_losses(ref), abs=TOL), run
    # FSDP checkpoints are consolidated: a plain single-process model loads them
    fsdp_ckpt = tmp_path / "fsdp" / "checkpoints" / "step-0000010"
    assert sorted(p.name for p in checkpoint_dirs(tmp_path / "fsdp")) == ["step-0000010", "step-0000020"]
    assert _max_diff(ref / "checkpoints" / "step-0000010", fsdp_ckpt) <= TOL

    # 2 -> 1: the FSDP run's step-10 checkpoint resumes in one process, on the same loss curve
    to1 = tmp_path / "to1"
    shutil.copytree(fsdp_ckpt, to1 / "checkpoints" / fsdp_ckpt.name)
    shutil.copy(tmp_path / "fsdp" / "metrics.jsonl", to1 / "metrics.jsonl")
    train(ShardedCopyTask(), _model(), _config(to1, 20), resume=True)
    assert _losses(to1) == pytest.approx(_losses(ref), abs=TOL)
    assert _max_diff(ref, to1) <= TOL


def test_killed_rank_leaves_last_checkpoint_and_restart_resumes(tmp_path):
    ref = tmp_path / "ref"
    train(ShardedCopyTask(), _model(), _config(ref, 12, grad_accum=1, checkpoint_every=4, eval_every=0))
    run = tmp_path / "crash"
    # rank 0 dies while writing step 8: step-0000008.tmp is half-written, step 4 is intact
    _torchrun("crash", tmp_path, "rank0-mid-write", expect_ok=False)
    assert [p.name for p in checkpoint_dirs(run)] == ["step-0000004"]
    assert sorted(p.name for p in (run / "checkpoints" / "step-0000008.tmp").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    # restarted, it resumes from step 4; now rank 1 dies in the middle of step 10
    _torchrun("crash", tmp_path, "rank1-mid-step", expect_ok=False)
    assert [p.name for p in checkpoint_dirs(run)] == ["step-0000004", "step-0000008"]
    # restarted again, it resumes from step 8 and finishes on the uninterrupted loss curve
    _torchrun("crash", tmp_path)
    attempts = (run / "attempts.txt").read_text().splitlines()
    assert attempts == ["rank0-mid-write none", "rank1-mid-step step-0000004", "none step-0000008"]
    assert [p.name for p in checkpoint_dirs(run)] == ["step-0000004", "step-0000008", "step-0000012"]
    assert not list((run / "checkpoints").glob("*.tmp"))
    assert _train_steps(run) == list(range(1, 13))
    assert _losses(run) == pytest.approx(_losses(ref), abs=TOL)
    assert _max_diff(ref, run) <= TOL


def test_every_task_family_trains_data_parallel(tmp_path):
    """Translation, language modelling, ViT and the Decision Transformer: their real recipes train
    under torchrun with 2 ranks that see different shards, and the rank-0 checkpoint loads in a
    plain process."""
    _torchrun("recipes", tmp_path)
    ranks = [json.loads((tmp_path / f"digests-rank{r}.json").read_text()) for r in range(2)]
    for name in RECIPE_FAMILIES:
        assert ranks[0][name] != ranks[1][name], f"{name}: both ranks drew the same first batch"
        run = tmp_path / name
        assert _train_steps(run) == [1, 2, 3, 4], name
        assert [p.name for p in checkpoint_dirs(run)] == ["step-0000004"], name
        assert (run / "results.json").is_file(), name
        attentive.load(run)  # the DDP run's weights load outside torchrun
    # the 69-character LM trains with the plain loss; "fused" gives the same weights under DDP
    for tag in ("lm-fused", "lm-fused-fsdp"):
        assert _max_diff(tmp_path / "shakespeare-char", tmp_path / tag) <= TOL, tag


def test_activation_checkpointing_keeps_gradients_and_eval():
    from attentive.train.fsdp import apply_activation_checkpointing

    task, batch = ShardedCopyTask(), ShardedCopyTask().train_batches(0)[0]
    plain, checkpointed = _model(), _model()
    assert apply_activation_checkpointing(checkpointed) == 4
    assert apply_activation_checkpointing(checkpointed) == 4  # idempotent: no double wrapping
    for model in (plain, checkpointed):
        task.loss(model, batch)[0].backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    assert checkpointed.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(task.loss(plain, batch)[0], task.loss(checkpointed, batch)[0])
    with pytest.raises(ValueError, match="TransformerLayer"):
        apply_activation_checkpointing(torch.nn.Linear(2, 2))


if __name__ == "__main__":
    _worker_main(*sys.argv[1:4])
