"""Checkpoints: safetensors + JSON, atomic writes, shape errors, corrupt files, no pickle."""

from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch
from safetensors import safe_open

import attentive
from attentive.models import DecoderLM, EncoderDecoder
from attentive import checkpoint as ckpt
from attentive.fileio import atomic_write
from attentive.checkpoint import CheckpointError, load_model, save_model
from helpers import tiny_encdec, tiny_gpt2


def _files(directory):
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("family", ["decoder-lm", "encoder-decoder"])
def test_round_trip_gives_identical_outputs(tmp_path, family):
    if family == "decoder-lm":
        model = DecoderLM(tiny_gpt2(positional="relative")).eval()  # relative: a learned bias table too
        inputs = (torch.randint(0, 50, (2, 7)),)
    else:
        model = EncoderDecoder(tiny_encdec()).eval()
        inputs = (torch.randint(1, 50, (2, 6)), torch.randint(1, 50, (2, 5)))
    attentive.save(model, tmp_path / "ckpt")
    assert _files(tmp_path / "ckpt") == ["config.json", "model.safetensors"]  # no temp files left
    loaded = attentive.load(tmp_path / "ckpt").eval()
    assert type(loaded) is type(model) and loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(*inputs), model(*inputs))
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_tied_weights_stored_once_and_still_tied_after_load(tmp_path):
    model = EncoderDecoder(tiny_encdec())
    save_model(model, tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    tied = {"src_embed.weight", "tgt_embed.weight", "generator.weight"}
    assert len(keys & tied) == 1
    assert len(keys) == len(model.state_dict()) - 2
    loaded = load_model(tmp_path)
    assert loaded.src_embed.weight is loaded.tgt_embed.weight is loaded.head.weight
    assert torch.equal(loaded.head.weight, model.head.weight)


def test_file_is_safetensors_not_pickle(tmp_path):
    save_model(DecoderLM(tiny_gpt2()), tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])  # safetensors: u64 little-endian header length
    assert 8 + header_len < len(data)
    header = json.loads(data[8 : 8 + header_len])
    assert "embed.weight" in header and header["__metadata__"] == {"format": "pt"}
    assert not data.startswith((b"\x80", b"PK"))  # neither a raw pickle nor torch.save's zip
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "decoder-lm" and config["d_model"] == 32


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model = DecoderLM(tiny_gpt2()).eval()
    save_model(model, tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    loaded = load_model(tmp_path).eval()
    ids = torch.randint(0, 50, (1, 5))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "state.bin"
    atomic_write(target, lambda tmp: open(tmp, "wb").write(b"old contents"))
    assert target.read_bytes() == b"old contents"

    def half_write_then_crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"new but incompl")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_write_then_crash)
    assert target.read_bytes() == b"old contents"
    assert _files(tmp_path) == ["state.bin"]


def test_atomic_write_gives_normal_permissions(tmp_path):
    atomic_write(tmp_path / "f.txt", lambda tmp: open(tmp, "w").write("x"))
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = DecoderLM(tiny_gpt2()).eval()
    save_model(model, tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(RuntimeError, match="mid-write"):
        save_model(model, tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert _files(tmp_path) == ["config.json", "model.safetensors"]
    load_model(tmp_path)  # still loadable


def test_shape_mismatch_names_first_mismatching_tensor(tmp_path):
    save_model(DecoderLM(tiny_gpt2(d_ff=64)), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["d_ff"] = 48
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    # first in the model's order: layer 0's FFN input projection (before its output projection)
    assert "'stack.layers.0.ffn.up.weight'" in msg and "(64, 32)" in msg and "(48, 32)" in msg


def test_unknown_and_missing_tensors_are_errors(tmp_path):
    model = DecoderLM(tiny_gpt2())
    state = ckpt.unique_state_dict(model)
    with pytest.raises(CheckpointError, match="'bogus'"):
        ckpt.load_state_into(model, {**state, "bogus": torch.zeros(1)})
    del state["stack.final_norm.weight"]
    with pytest.raises(CheckpointError, match="'stack.final_norm.weight' is missing"):
        ckpt.load_state_into(model, state)


@pytest.mark.parametrize("content", [b"", b"\xff" * 64, b"not a safetensors file at all", "truncated"])
def test_corrupt_weights_give_one_line_checkpoint_error(tmp_path, content):
    save_model(DecoderLM(tiny_gpt2()), tmp_path)
    path = tmp_path / "model.safetensors"
    if content == "truncated":
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "model.safetensors" in msg
    assert isinstance(err.value, ValueError)  # CheckpointError is a ValueError for callers


def test_missing_or_bad_checkpoint_parts(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")
    save_model(DecoderLM(tiny_gpt2()), tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights file"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="bad config"):
        load_model(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(tmp_path)


def test_concurrent_atomic_writes_of_one_file_never_collide(tmp_path):
    """Ranks under torchrun cache the same dataset / tokenizer at once: every writer has its own
    temporary file, so none finds its temporary renamed away by another, and no half file shows."""
    from concurrent.futures import ThreadPoolExecutor

    from attentive.fileio import atomic_write_bytes

    target = tmp_path / "shared.bin"
    payloads = [bytes([i]) * 200_000 for i in range(8)]

    def write(i):
        for _ in range(10):
            atomic_write_bytes(target, payloads[i])
            assert target.read_bytes() in payloads

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]  # no temporary files left
