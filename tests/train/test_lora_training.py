"""LoRA on the one trainer: adapter-only checkpoints, exact resume, and 2-rank DDP and FSDP
(torchrun, gloo) that match one process. This file is also the worker torchrun starts
(``python -m torch.distributed.run ... test_lora_training.py OUT``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # chat_helpers, when torchrun starts this file as a script

import attentive  # noqa: E402
from attentive.checkpoint import read_tensors  # noqa: E402
from attentive.data.instruction import Example  # noqa: E402
from attentive.lora import ADAPTER_WEIGHTS, LoRAConfig, add_lora  # noqa: E402
from attentive.tasks.instruction import InstructionDataConfig, InstructionTask  # noqa: E402
from attentive.train.distributed import DistContext  # noqa: E402
from attentive.train.optim import OptimConfig  # noqa: E402
from attentive.train.run_folder import checkpoint_dirs  # noqa: E402
from attentive.train.trainer import TrainConfig, train  # noqa: E402
from chat_helpers import chat_model, chat_tokenizer  # noqa: E402

PAIRS = [
    ("Ein Hund rennt.", "A dog runs."),
    ("Zwei Männer spielen.", "Two men play."),
    ("Der Park.", "The park."),
    ("Ein Junge.", "A boy."),
    ("Fußball auf dem Rasen.", "Football on the grass."),
    ("Hund?", "Dog."),
    ("Zwei Hunde.", "Two dogs."),
    ("Ein Mann.", "A man."),
]
TOL = 1e-5


def _task() -> InstructionTask:
    examples = [Example.chat(("user", f"Translate to English: {de}"), ("assistant", en)) for de, en in PAIRS]
    data = InstructionDataConfig(packing=False, batch_size=2, eval_batch_size=4)
    return InstructionTask(chat_tokenizer(), examples, examples[:2], data)


def _model(base: str | None = None):
    model = chat_model()
    torch.manual_seed(1)  # the adapters' A matrices
    return add_lora(model, LoRAConfig(rank=4, alpha=8, dropout=0.0, targets=("q_proj", "v_proj", "down")), base=base)


def _config(out, steps: int, **kw) -> TrainConfig:
    optim = OptimConfig(optimizer="adamw", lr=1e-2, schedule="constant", warmup_steps=1, weight_decay=0.0)
    kw = {"log_every": 1, "eval_every": 0, "checkpoint_every": 3, **kw}
    return TrainConfig(
        out_dir=str(out), max_steps=steps, progress=False, device="cpu", precision="fp32", optim=optim, **kw
    )


def _adapter(run: Path) -> dict[str, torch.Tensor]:
    return read_tensors(run / ADAPTER_WEIGHTS)


def _max_diff(a: Path, b: Path) -> float:
    ta, tb = _adapter(a), _adapter(b)
    assert ta.keys() == tb.keys()
    return max((ta[k] - tb[k]).abs().max().item() for k in ta)


def test_lora_checkpoints_hold_the_adapter_and_resume_exactly(tmp_path):
    base = tmp_path / "base"
    attentive.save(chat_model(), base)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(_task(), _model(str(base)), _config(straight, 6))
    train(_task(), _model(str(base)), _config(resumed, 3))
    train(_task(), _model(str(base)), _config(resumed, 6), resume=True)
    assert _max_diff(straight, resumed) == 0.0  # exact: same batches, same RNG, same optimiser state
    files = {p.name for p in checkpoint_dirs(straight)[-1].iterdir()}
    assert {"adapter.json", "adapter.safetensors", "trainer_state.safetensors"} <= files
    assert "model.safetensors" not in files  # the frozen base is not copied into every checkpoint
    assert _max_diff(straight, checkpoint_dirs(straight)[-1]) == 0.0
    # the run folder is an adapter folder: from_pretrained merges it into its base
    loaded = attentive.from_pretrained(straight)
    trained = _model(str(base))
    from attentive.lora import load_adapter_state

    load_adapter_state(trained, _adapter(straight))
    ids = torch.randint(0, 300, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), trained(ids), atol=1e-5, rtol=1e-5)
        assert (trained(ids) - chat_model()(ids)).abs().max() > 1e-3  # it did learn something
    assert loaded.tokenizer.chat_template == chat_tokenizer().chat_template  # the task saved the tokenizer


def _torchrun(out: Path) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "--monitor-interval=0.1",
        __file__,
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, f"torchrun: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


def test_lora_under_ddp_and_fsdp_on_two_ranks_matches_one_process(tmp_path):
    # one process, two micro-batches a step == two ranks, one micro-batch each (rank r takes batches r::2)
    train(_task(), _model(), _config(tmp_path / "one", 4, grad_accum=2))
    _torchrun(tmp_path)
    for run in ("ddp", "fsdp"):
        assert _max_diff(tmp_path / "one", tmp_path / run) <= TOL, run
        losses = [
            r["loss"]
            for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())
            if r["split"] == "train"
        ]
        assert len(losses) == 4, run
    assert json.loads((tmp_path / "fsdp" / "results.json").read_text())["val_loss"] > 0  # eval on gathered weights


def _worker(out: str) -> None:
    torch.set_num_threads(1)
    ctx = DistContext.from_env("cpu")
    try:
        for strategy in ("ddp", "fsdp"):
            train(_task(), _model(), _config(Path(out) / strategy, 4, strategy=strategy), dist=ctx)
    finally:
        ctx.close()


if __name__ == "__main__":
    _worker(sys.argv[1])
