"""Runs and commands SIGKILLed at random moments (inside checkpoint writing and rotation too)
leave folders that load, resume exactly and never show half a file as whole.

The harness is ``kill_harness.py``; ``benchmarks/reliability/kill_runs.py`` runs it 100+ times.
"""

from __future__ import annotations

import random

import pytest
import torch

import attentive
import kill_harness as kh
from attentive.train.run_folder import checkpoint_dirs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: the losses and weights every killed-and-resumed run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    torch.set_num_threads(1)
    kh.train_tiny(out)
    return out, kh.train_losses(out)


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, reference):
    """Four kills of one run (two timed at random, two as a checkpoint write begins), each
    followed by the folder checks and a ``--resume``; the end result equals the reference."""
    ref_dir, ref_losses = reference
    out = tmp_path / "run"
    log = kh.kill_training_chain(out, ref_losses, kills=4, rng=random.Random(1), window=1.5)
    assert len(log) == 4
    kh.check_finished(out, ref_dir)


@pytest.fixture()
def commands(tmp_path, reference):
    """(argv, output, check) for ``attentive average``, ``merge`` and ``export``: each run once
    whole here (which also imports what the forked children use), its result what ``check``
    compares a killed command's output with."""
    from chat_helpers import chat_model, chat_tokenizer

    from attentive.cli.main import main
    from attentive.lora import LoRAConfig, add_lora, save_adapter

    ckpts = [str(p) for p in checkpoint_dirs(reference[0])]
    base, lora = tmp_path / "base", tmp_path / "lora"
    attentive.interop.pretrained.Pretrained(chat_model(), chat_tokenizer(), "", "attentive").save(base)
    save_adapter(lora, add_lora(chat_model(), LoRAConfig(rank=4, alpha=8, targets=("q_proj",)), base=str(base)))
    made = []
    for name, args in (
        ("average", ["average", *ckpts]),
        ("merge", ["merge", "--adapter", str(lora)]),
        ("export", ["export", str(base), "--to", "hf"]),
    ):
        want = tmp_path / "want" / name
        assert main([*args, "--out", str(want)]) == 0
        weights = attentive.from_pretrained(want, optimize=False).model.state_dict()
        out = tmp_path / name / "out"  # alone in its folder: the harness watches it for temporary entries
        out.parent.mkdir()

        def check(out, weights=weights):
            got = attentive.from_pretrained(out, optimize=False).model.state_dict()
            assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)

        made.append(([*args, "--out", str(out)], out, check))
    return made


def test_killed_average_merge_export_leave_whole_output_or_none(commands):
    """Each command killed as its output's temporary entry appears: its output is absent or
    whole, never half."""
    rng = random.Random(2)
    for argv, out, check in commands:
        phase = kh.kill_command(argv, out, rng, window=5, on_temp=True)
        if out.exists():
            check(out)
        else:
            assert phase != "finished", argv
