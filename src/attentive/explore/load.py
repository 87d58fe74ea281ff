"""``--model SPEC`` -> a ``Subject``: the model any spec names, shown by its family's view.

SPEC is anything ``attentive.from_pretrained`` takes: a run folder or checkpoint, a GGUF file, a
Hugging Face or CTranslate2 folder, a hub id, or a bundled model's short name (``smollm2``,
``minilm``, ``whisper-tiny.en``, also called ``whisper``). A translation run comes with its
source tokenizer and search settings (the beam view shows the run's own beams).
"""

from __future__ import annotations

import torch

from .encoder import EncoderModel
from .lm import LanguageModel
from .speech import SpeechRecognizer
from .subject import Subject
from .translation import TranslationModel
from .vision import VisionModel

FAMILIES = {"decoder-lm": LanguageModel, "encoder": EncoderModel, "speech": SpeechRecognizer, "vit": VisionModel}


def load_subject(spec: str, device: str | torch.device = "cpu") -> Subject:
    """The model named by ``spec`` as a Subject; errors are one-line ValueErrors."""
    from ..interop.resolve import from_pretrained

    # plain: the explorer reads attention maps and projections module by module
    loaded = from_pretrained(spec, family=("encoder-decoder", *FAMILIES), device=device, optimize=False)
    if loaded.translator is not None:
        return TranslationModel(loaded.translator, loaded.title)
    return make_subject(loaded.model, loaded.tokenizer, loaded.title)


def make_subject(model, tokenizer=None, name: str = "model") -> Subject:
    """A Subject for a model already in memory (tests, notebooks). An encoder-decoder needs its
    tokenizer (shared by source and target) to translate."""
    kind = model.config.model_type
    if kind == "encoder-decoder":
        from ..decode.translator import Translator

        if tokenizer is None:
            raise ValueError("a translation model needs its tokenizer")
        return TranslationModel(Translator(model, tokenizer), name)
    if kind not in FAMILIES:
        raise ValueError(f"the explorer shows {', '.join(['encoder-decoder', *FAMILIES])} models, not {kind!r}")
    if kind != "vit" and tokenizer is None:
        raise ValueError(f"{name}: a {kind} model needs its tokenizer (tokenizer.json beside the weights)")
    return FAMILIES[kind](model, tokenizer, name)
