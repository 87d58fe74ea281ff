"""Checkpoint averaging: the element-wise mean, errors for mismatched checkpoints, and the command."""

from __future__ import annotations

import json

import pytest
import torch

import attentive
from attentive.cli.main import main
from attentive.models import EncoderDecoder
from attentive.train.average import average_checkpoints, recent_checkpoints, write_average
from attentive.checkpoint import CheckpointError

from helpers import tiny_encdec


def _checkpoints(root, n, **overrides):
    paths = []
    for i in range(n):
        torch.manual_seed(i)
        path = root / "checkpoints" / f"step-{(i + 1) * 10:07d}"
        attentive.save(EncoderDecoder(tiny_encdec(**overrides)), path)
        (path / "tokenizer.json").write_text("{}")
        paths.append(path)
    return paths


def test_average_is_the_elementwise_mean(tmp_path):
    paths = _checkpoints(tmp_path, 3)
    models = [attentive.load(p).state_dict() for p in paths]
    averaged = average_checkpoints(paths)
    for name, tensor in averaged.items():
        expected = sum(m[name].double() for m in models) / 3
        assert torch.allclose(tensor.double(), expected, atol=1e-7), name
        assert tensor.dtype == models[0][name].dtype


def test_write_average_makes_a_loadable_checkpoint(tmp_path):
    paths = _checkpoints(tmp_path, 2)
    out = write_average(paths, tmp_path / "avg")
    model = attentive.load(out)
    assert torch.allclose(model.src_embed.weight, average_checkpoints(paths)["src_embed.weight"])
    assert (out / "tokenizer.json").exists()


def test_recent_checkpoints_picks_the_newest(tmp_path):
    paths = _checkpoints(tmp_path, 4)
    (tmp_path / "checkpoints" / "step-0000050.tmp").mkdir()  # an interrupted save is ignored
    assert recent_checkpoints(tmp_path, 2) == paths[2:]
    assert recent_checkpoints(tmp_path, 9) == paths


def test_mismatched_or_missing_checkpoints_are_errors(tmp_path):
    a = _checkpoints(tmp_path / "a", 1)
    b = _checkpoints(tmp_path / "b", 1, d_ff=128)
    with pytest.raises(CheckpointError, match="different config.json"):
        average_checkpoints(a + b)
    with pytest.raises(CheckpointError, match="does not exist"):
        average_checkpoints(a + [tmp_path / "missing"])
    with pytest.raises(CheckpointError, match="no checkpoints/ folder"):
        recent_checkpoints(tmp_path / "missing", 5)
    with pytest.raises(ValueError, match="is one of the checkpoints"):
        write_average(a, a[0])


def test_average_command(tmp_path, capsys):
    paths = _checkpoints(tmp_path / "run", 3)
    assert main(["average", "--out", str(tmp_path / "last2"), "--last", "2", str(tmp_path / "run")]) == 0
    assert "averaged 2 checkpoint(s)" in capsys.readouterr().out
    expected = average_checkpoints(paths[1:])
    got = attentive.load(tmp_path / "last2").state_dict()
    assert torch.allclose(got["src_embed.weight"], expected["src_embed.weight"])
    assert main(["average", "--out", str(tmp_path / "all"), *map(str, paths)]) == 0
    assert json.loads((tmp_path / "all" / "config.json").read_text())["d_model"] == 32
    assert main(["average", "--out", str(tmp_path / "x"), str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
