"""The model families attentive reads from and writes to Hugging Face folders, one module each.

A family module holds everything about its family, in both directions, so that adding a family
is one new module plus one entry in ``HF_FAMILY_MODULES``:

- ``NAME`` (as errors say it) and ``RULES`` (+ ``IGNORED``): the tensor name table, read forwards
  when loading and backwards when exporting (``interop.hf_maps.rename``);
- ``read_config(hf, ...)`` / ``read_state(state, config)``: HF config dict and weights -> the
  attentive config and state dict; ``load(folder, language, overrides)``: an ``HFFolder``
  (``interop.loading``) -> (model, tokenizer), with the family's own extras (pooling files,
  tokenizer defaults, pixel statistics);
- for export, ``EXPORTS`` (the attentive ``model_type`` it takes, and the positional scheme
  where two families take one model type) and ``to_hf(model)`` -> (HF config dict, HF-named
  tensors); optionally ``extra_files(model)`` (JSON files by name) and
  ``hf_generation_config(model, tokenizer, hf_config)`` for the families that generate.

``interop.pretrained`` dispatches on a folder's ``model_type`` through ``HF_FAMILY_MODULES``, and
``interop.hf_export`` picks the family whose ``EXPORTS`` fits the model. ``decoder`` is no family:
it holds what the decoder-only ones (LLaMA, GPT-2) share.
"""

from . import bert, gpt2, llama, marian, vit, whisper

HF_FAMILY_MODULES = {  # Hugging Face model_type -> its module (the order is the order errors list them in)
    "bert": bert,
    "llama": llama,
    "gpt2": gpt2,
    "whisper": whisper,
    "vit": vit,
    "marian": marian,
}
