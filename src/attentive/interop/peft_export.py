"""attentive LoRA adapters -> PEFT adapter folders (``adapter_config.json`` +
``adapter_model.safetensors``) that ``peft.PeftModel.from_pretrained`` puts on the Hugging Face
export of the base model.

An adapter's A and B matrices keep their values; only names change: attentive's module name
goes through the LLaMA name table backwards (``stack.layers.3.self_attn.out_proj`` ->
``model.layers.3.self_attn.o_proj``) and gets PEFT's prefix, ``base_model.model.``. The LoRA
settings (rank, alpha, dropout) carry over and the targets become the Hugging Face module names.
LLaMA-style bases only: those are the ones exported to ``LlamaForCausalLM``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..checkpoint import save_tensors
from ..config import config_from_dict
from ..fileio import atomic_directory, atomic_write_text
from ..lora import read_adapter
from .families import llama
from .hf_maps import rename

PEFT_PREFIX = "base_model.model."


def peft_files(folder: str | Path, base_name: str | None = None) -> tuple[dict, dict]:
    """(adapter_config.json, adapter_model.safetensors tensors) for the adapter folder ``folder``."""
    adapter = read_adapter(folder)
    if not adapter.base_config:
        raise ValueError(f"{folder}: the adapter does not record its base model's config; PEFT export needs it")
    llama.hf_config(config_from_dict(adapter.base_config))  # LLaMA-style, or a one-line refusal
    tensors, targets = {}, set()
    for name, tensor in adapter.tensors.items():
        module, _, kind = name.rpartition(".lora_")  # "stack.layers.0.self_attn.q_proj", "A.weight"
        hf_module = next(
            iter(rename({f"{module}.weight": tensor}, llama.RULES, family=llama.NAME, reverse=True))
        ).removesuffix(".weight")
        targets.add(hf_module.rsplit(".", 1)[-1])
        tensors[f"{PEFT_PREFIX}{hf_module}.lora_{kind}"] = tensor.contiguous()
    c = adapter.config
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": c.rank,
        "lora_alpha": c.alpha,
        "lora_dropout": c.dropout,
        "target_modules": sorted(targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "base_model_name_or_path": base_name or adapter.base,
        "inference_mode": True,
        "modules_to_save": None,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    return config, tensors


def export_peft(folder: str | Path, out: str | Path, base_name: str | None = None) -> Path:
    """Write the PEFT folder ``out`` (whole or not at all). ``base_name``: what to record as the base
    (default: the base the adapter came from); point it at the base's Hugging Face export."""
    config, tensors = peft_files(folder, base_name)
    with atomic_directory(out) as tmp:
        save_tensors(tmp / "adapter_model.safetensors", tensors, metadata={"format": "pt"})
        atomic_write_text(tmp / "adapter_config.json", json.dumps(config, indent=2) + "\n")
    return Path(out)
