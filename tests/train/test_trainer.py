"""The shared trainer: loss falls, checkpoints are complete, resume is exact."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import attentive
from attentive.train.task import Task
from attentive.train.optim import OptimConfig, lr_at
from attentive.train.run_folder import checkpoint_dirs
from attentive.train.trainer import TrainConfig, train


class CopyTask(Task):
    """Reverse-copy toy task: the decoder reproduces the source sequence."""

    name = "copy"

    def __init__(self, vocab: int = 20, length: int = 8, batch: int = 16, seed: int = 0):
        self.vocab, self.length, self.batch, self.seed = vocab, length, batch, seed

    def train_batches(self, epoch, rank=0, world_size=1):
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        data = torch.randint(4, self.vocab, (10, self.batch, self.length), generator=g)
        return [b[rank::world_size] for b in data]

    def count(self, batch):
        return batch.numel()

    def loss(self, model, batch):
        bos = torch.ones(batch.shape[0], 1, dtype=torch.long, device=batch.device)
        logits = model(batch, torch.cat([bos, batch[:, :-1]], dim=1))
        loss = F.cross_entropy(logits.flatten(0, 1), batch.flatten(), reduction="sum")
        return loss, {}

    def evaluate(self, model):
        batch = self.train_batches(999)[0]
        loss, _ = self.loss(model, batch)
        return {"loss": loss.item() / self.count(batch)}


def _model():
    torch.manual_seed(0)
    return attentive.build("transformer-tiny", src_vocab_size=20, tgt_vocab_size=20, dropout=0.1)


def _config(out, steps, **kw):
    optim = OptimConfig(schedule="inverse_sqrt", lr=3e-3, warmup_steps=20)
    kw = {"device": "cpu", **kw}
    return TrainConfig(
        out_dir=str(out),
        max_steps=steps,
        log_every=1,
        eval_every=10,
        checkpoint_every=10,
        progress=False,
        optim=optim,
        **kw,
    )


def _train_losses(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]


def test_training_reduces_loss_and_writes_run_folder(tmp_path):
    results = train(CopyTask(), _model(), _config(tmp_path, 150))
    losses = _train_losses(tmp_path)
    assert losses[-1] < 0.7 * losses[0]
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "loss.png", "results.json", "train_config.json"):
        assert (tmp_path / name).exists(), name
    assert [p.name for p in checkpoint_dirs(tmp_path)] == [f"step-{s:07d}" for s in (110, 120, 130, 140, 150)]
    assert results["step"] == 150
    reloaded = attentive.load(tmp_path)
    assert isinstance(reloaded, type(_model()))


@pytest.mark.parametrize("accum", [1, 2])
def test_resume_is_exact(tmp_path, accum):
    full, part = tmp_path / "full", tmp_path / "part"
    train(CopyTask(), _model(), _config(full, 40, grad_accum=accum))
    train(CopyTask(), _model(), _config(part, 20, grad_accum=accum))
    # the second half must not see the first run's schedule horizon: same max_steps when resuming
    train(CopyTask(), _model(), _config(part, 40, grad_accum=accum), resume=True)
    a, b = _train_losses(full), _train_losses(part)
    # first-half losses of `part` were computed with max_steps=20 but the schedule only depends
    # on the step for inverse_sqrt, so both halves must match step for step
    assert len(a) == len(b) == 40
    assert a == pytest.approx(b, abs=1e-6)
    wa = attentive.load(full).state_dict()
    wb = attentive.load(part).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_noam_schedule_matches_paper():
    cfg = OptimConfig(schedule="noam", lr=1.0, warmup_steps=4000, model_dim=512)
    for step in (1, 100, 4000, 10000):
        expected = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
        assert lr_at(step, cfg) == pytest.approx(expected)
    assert lr_at(4000, cfg) == pytest.approx(max(lr_at(s, cfg) for s in range(1, 20000, 50)), rel=1e-3)


def test_progress_bar_runs_over_steps_or_the_time_budget(tmp_path):
    """The bar shows the fraction of the run done by whichever limit ends it first."""
    from attentive.train.trainer import Trainer

    trainer = Trainer(CopyTask(), _model(), _config(tmp_path, 100, max_minutes=1.0))
    trainer.step, trainer.elapsed = 50, 15.0
    assert trainer._run_fraction() == 0.5  # steps ahead of time
    trainer.elapsed = 45.0
    assert trainer._run_fraction() == 0.75  # time ahead of steps
    trainer.elapsed = 90.0
    assert trainer._run_fraction() == 1.0
    trainer = Trainer(CopyTask(), _model(), _config(tmp_path, 100, max_minutes=None))
    trainer.step, trainer.elapsed = 25, 1e6
    assert trainer._run_fraction() == 0.25  # no time budget: steps alone


# ----------------------------------------------------------------------------- bugs found by reading


def test_keep_checkpoints_zero_is_refused_not_keep_everything(tmp_path):
    """``[: -0]`` is empty, so 0 used to keep every checkpoint; 0 and negatives are now refused."""
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"keep_checkpoints must be an integer >= 1.*{bad}"):
            _config(tmp_path, 10, keep_checkpoints=bad)
    train(CopyTask(), _model(), _config(tmp_path, 30, keep_checkpoints=1))
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-0000030"]


def test_resume_survives_a_metrics_line_torn_by_a_kill(tmp_path):
    train(CopyTask(), _model(), _config(tmp_path, 20))
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 21, "split": "tra')  # killed mid-write
    with pytest.warns(UserWarning, match="torn"):
        train(CopyTask(), _model(), _config(tmp_path, 30), resume=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["split"] == "train"]
    assert steps == list(range(1, 31))  # the torn record is gone, nothing else lost or doubled


class _PrecisionProbe(CopyTask):
    """Records whether autocast is on when the trainer evaluates."""

    def __init__(self):
        super().__init__()
        self.seen: dict[str, tuple[bool, torch.dtype]] = {}

    def _probe(self, when):
        self.seen[when] = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))

    def evaluate(self, model):
        self._probe("periodic")
        return super().evaluate(model)

    def final_evaluate(self, model):
        self._probe("final")
        return {}


def test_final_evaluation_runs_in_the_training_precision(tmp_path):
    """The periodic evaluation ran under bf16 autocast and the final one in fp32, so the two
    figures of one run were computed at different precisions."""
    task = _PrecisionProbe()
    train(task, _model(), _config(tmp_path, 10, precision="bf16"))
    assert task.seen["periodic"] == task.seen["final"] == (True, torch.bfloat16)
    task = _PrecisionProbe()
    train(task, _model(), _config(tmp_path / "fp32", 10, precision="fp32"))
    assert task.seen["periodic"][0] is task.seen["final"][0] is False


@pytest.mark.parametrize("recipe", ["shakespeare-char", "vit-mnist"])
def test_noam_schedule_reads_the_width_of_the_model_being_trained(tmp_path, recipe):
    """Only the translation recipe used to pass d_model to the schedule; the others scaled by 512."""
    from attentive.recipes import get_recipe

    small = {
        "shakespeare-char": {"num_layers": 1, "d_model": 48, "num_heads": 2, "d_ff": 64, "block_size": 32},
        "vit-mnist": {
            "num_layers": 1,
            "d_model": 48,
            "num_heads": 2,
            "d_ff": 64,
            "train_limit": 64,
            "batch_size": 16,
            "val_size": 16,
            "test_limit": 16,
        },
    }[recipe]
    built = get_recipe(recipe).build(
        {
            **small,
            "schedule": "noam",
            "lr": 1.0,
            "warmup_steps": 4,
            "max_steps": 1,
            "max_minutes": None,
            "log_every": 1,
            "eval_every": 0,
            "checkpoint_every": 0,
            "device": "cpu",
            "precision": "fp32",
            "progress": False,
            "out_dir": str(tmp_path),
        }
    )
    train(built.task, built.model, built.train_config)
    logged = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["lr"]
    assert logged == pytest.approx(48**-0.5 * 4**-1.5)


def test_a_device_the_machine_lacks_stops_the_run_instead_of_training_on_the_cpu(tmp_path):
    """``cuda:1`` was accepted and, not being spelled "cuda", silently trained on the CPU."""
    from attentive.train.trainer import Trainer

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = f"cuda:{count}"  # one past the last GPU this machine has
    with pytest.raises(ValueError, match=f"'{missing}'.*this machine has"):
        Trainer(CopyTask(), _model(), _config(tmp_path, 10, device=missing))
    with pytest.raises(ValueError, match="not one of auto, cpu, cuda or cuda:N"):
        _config(tmp_path, 10, device="gpu")
