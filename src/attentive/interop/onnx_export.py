"""attentive models -> ONNX graphs that ONNX Runtime runs, through ``torch.onnx.export`` (dynamo).

What each export holds (one folder, written whole or not at all):

- a ``DecoderLM``: ``prefill.onnx`` and ``decode.onnx``. Both take ``input_ids (B, T)``,
  ``attention_mask (B, Tk)`` (1 = real token, 0 = padding, over past + new tokens) and
  ``position_ids (B, T)``; ``decode`` also takes the past keys and values of every layer
  stacked, ``past_keys`` / ``past_values (L, B, Hkv, P, Dh)``. Both return ``logits (B, T, V)``
  and the keys and values of past + new tokens, ``present_keys`` / ``present_values``, which the
  next decode step takes as its past. Batch, sequence and past lengths are dynamic.
  ``greedy_onnx`` runs the two graphs in a greedy loop.
- a ``VisionTransformer``: ``model.onnx``, ``pixel_values (B, C, H, W)`` (raw 0..1 pixels; the
  model normalises them) -> ``logits (B, K)``.
- an ``Encoder`` (BERT, MiniLM): ``model.onnx``, ``input_ids`` and ``attention_mask (B, T)`` ->
  ``last_hidden_state (B, T, D)`` and the pooled ``sentence_embedding (B, D)``.

Beside the graphs: ``onnx.json`` (the graph names, inputs, outputs and the cache layout) and the
tokenizer files. The decoding graphs reuse the model's own ``decode`` over the one KV-cache
interface (``nn.cache.DynamicCache``), filled from the past tensors: no second attention or cache.

Dimension names: B batch, T new tokens, P past tokens, Tk = P + T, L layers, Hkv key/value heads,
Dh head width, V vocabulary, D model width.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..fileio import atomic_directory, atomic_write_text
from ..nn.cache import DynamicCache

ONNX_FAMILIES = ("decoder-lm", "vit", "encoder")
_KV = ["present_keys", "present_values"]


class _LMStep(nn.Module):
    """One model call over a cache filled from stacked past tensors (none for the prefill)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        past_keys: Tensor | None = None,
        past_values: Tensor | None = None,
    ):
        cache = DynamicCache()
        if past_keys is not None:
            cache.keys, cache.values = list(past_keys.unbind(0)), list(past_values.unbind(0))  # L x (B, Hkv, P, Dh)
        hidden = self.model.decode(
            input_ids, key_mask=attention_mask.bool(), positions=position_ids, cache=cache
        ).hidden  # (B, T, D)
        # (B, T, V), then keys and values (L, B, Hkv, Tk, Dh)
        return self.model.head(hidden), torch.stack(cache.keys), torch.stack(cache.values)


class _Prefill(_LMStep):
    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor):
        return super().forward(input_ids, attention_mask, position_ids)


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor):
        mask = attention_mask.bool()
        hidden = self.model(input_ids, mask)  # (B, T, D)
        return hidden, self.model.pool(hidden, mask)  # (B, T, D), (B, D)


def _export(module: nn.Module, args: tuple, path: Path, names: tuple[list[str], list[str]], dynamic) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on axis names and deprecations
        program = torch.onnx.export(
            module.eval(),
            args,
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=names[0],
            output_names=names[1],
            verbose=False,
            report=False,
        )
    program.save(str(path))


def _decoder_lm(model: nn.Module, folder: Path) -> dict:
    from torch.export import Dim

    c = model.config
    batch, seq, past = Dim("batch"), Dim("seq"), Dim("past")
    ids = torch.ones(2, 3, dtype=torch.long)  # (B, T): example inputs; every length is dynamic
    mask = torch.ones(2, 3, dtype=torch.long)
    mask[1, 0] = 0  # a left-padded row, so no path specialises on an all-ones mask
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    inputs = ["input_ids", "attention_mask", "position_ids"]
    _export(
        _Prefill(model),
        (ids, mask, positions),
        folder / "prefill.onnx",
        (inputs, ["logits", *_KV]),
        ({0: batch, 1: seq}, {0: batch, 1: seq}, {0: batch, 1: seq}),
    )
    with torch.no_grad():
        _, keys, values = _Prefill(model).eval()(ids, mask, positions)  # (L, B, Hkv, 3, Dh)
    step = torch.ones(2, 1, dtype=torch.long)
    _export(
        _LMStep(model),
        (step, torch.cat([mask, step], 1), positions[:, -1:] + 1, keys, values),
        folder / "decode.onnx",
        (inputs + ["past_keys", "past_values"], ["logits", *_KV]),
        ({0: batch}, {0: batch, 1: past + 1}, {0: batch}, {1: batch, 3: past}, {1: batch, 3: past}),
    )
    return {
        "graphs": {"prefill": "prefill.onnx", "decode": "decode.onnx"},
        "num_layers": c.num_layers,
        "num_kv_heads": keys.shape[2],
        "head_dim": keys.shape[-1],
        "vocab_size": c.vocab_size,
        "inputs": inputs,
        "past": ["past_keys", "past_values"],
        "outputs": ["logits", *_KV],
    }


def _vit(model: nn.Module, folder: Path) -> dict:
    from torch.export import Dim

    c = model.config
    pixels = torch.rand(2, c.in_channels, c.image_size, c.image_size)
    _export(model, (pixels,), folder / "model.onnx", (["pixel_values"], ["logits"]), ({0: Dim("batch")},))
    return {"graphs": {"model": "model.onnx"}, "inputs": ["pixel_values"], "outputs": ["logits"]}


def _encoder(model: nn.Module, folder: Path) -> dict:
    from torch.export import Dim

    batch, seq = Dim("batch"), Dim("seq")
    ids = torch.ones(2, 4, dtype=torch.long)
    mask = torch.ones(2, 4, dtype=torch.long)
    mask[1, -1] = 0
    outputs = ["last_hidden_state", "sentence_embedding"]
    _export(
        _Encoder(model),
        (ids, mask),
        folder / "model.onnx",
        (["input_ids", "attention_mask"], outputs),
        ({0: batch, 1: seq}, {0: batch, 1: seq}),
    )
    return {"graphs": {"model": "model.onnx"}, "inputs": ["input_ids", "attention_mask"], "outputs": outputs}


_EXPORTERS = {"decoder-lm": _decoder_lm, "vit": _vit, "encoder": _encoder}


def export_onnx(model: nn.Module, tokenizer, out: str | Path) -> Path:
    """Write the ONNX folder ``out`` for ``model`` (see the module docstring)."""
    from ..lora import lora_config_of

    kind = model.config.model_type
    if kind not in _EXPORTERS:
        raise ValueError(f"ONNX export covers DecoderLM, ViT and Encoder models; this is a {kind} model")
    if lora_config_of(model) is not None:
        raise ValueError("this model carries an unmerged LoRA adapter: merge it first (attentive merge)")
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's translator)
    except ImportError:
        raise ValueError("ONNX export needs onnx and onnxscript (pip install 'attentive[export]')") from None
    model = model.float().eval()
    with atomic_directory(out) as tmp:
        info = {"model_type": kind, **_EXPORTERS[kind](model, tmp)}
        if tokenizer is not None and hasattr(tokenizer, "save"):
            tokenizer.save(tmp)
            info["eos_ids"] = list(getattr(tokenizer, "eos_ids", None) or [getattr(tokenizer, "eos_id", None)])
            info["pad_id"] = getattr(tokenizer, "pad_id", None)
        atomic_write_text(tmp / "onnx.json", json.dumps(info, indent=2) + "\n")
    return Path(out)


def greedy_onnx(
    folder: str | Path, prompt: list[int], max_new_tokens: int, stop_ids: tuple[int, ...] = ()
) -> list[int]:
    """Greedy continuation of one prompt through an exported LM's prefill and decode graphs."""
    import numpy as np
    import onnxruntime as ort

    folder = Path(folder)
    info = json.loads((folder / "onnx.json").read_text(encoding="utf-8"))
    if info.get("model_type") != "decoder-lm":
        raise ValueError(f"{folder} holds an ONNX {info.get('model_type')} model, not a language model")
    prefill = ort.InferenceSession(str(folder / info["graphs"]["prefill"]), providers=["CPUExecutionProvider"])
    decode = ort.InferenceSession(str(folder / info["graphs"]["decode"]), providers=["CPUExecutionProvider"])
    ids = np.array([prompt], dtype=np.int64)  # (1, T)
    mask = np.ones_like(ids)
    logits, keys, values = prefill.run(
        None, {"input_ids": ids, "attention_mask": mask, "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None]}
    )
    out: list[int] = []
    while len(out) < max_new_tokens:
        token = int(logits[0, -1].argmax())
        if token in stop_ids:
            break
        out.append(token)
        mask = np.ones((1, mask.shape[1] + 1), dtype=np.int64)
        logits, keys, values = decode.run(
            None,
            {
                "input_ids": np.array([[token]], dtype=np.int64),
                "attention_mask": mask,
                "position_ids": np.array([[mask.shape[1] - 1]], dtype=np.int64),
                "past_keys": keys,
                "past_values": values,
            },
        )
    return out
