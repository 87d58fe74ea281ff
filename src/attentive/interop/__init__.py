"""Readers for pretrained weights in other formats, mapped to Hugging Face names.

Each reader returns plain ``dict[str, torch.Tensor]`` state dicts named exactly as the
matching ``transformers`` class names its parameters (``LlamaForCausalLM``,
``WhisperForConditionalGeneration``), plus a config dict, so attentive's own model classes
need only one HF-name map each.
"""

from attentive.interop.ctranslate2 import CT2Model, read_ct2_folder, read_ct2_model, whisper_ct2_to_hf
from attentive.interop.gguf import GGUFLlama, LlamaGGUFConfig, load_gguf_llama
from attentive.interop.locate import minilm_dir, smollm2_gguf, whisper_ct2_dir

__all__ = [
    "CT2Model",
    "read_ct2_folder",
    "read_ct2_model",
    "whisper_ct2_to_hf",
    "GGUFLlama",
    "LlamaGGUFConfig",
    "load_gguf_llama",
    "minilm_dir",
    "smollm2_gguf",
    "whisper_ct2_dir",
]
