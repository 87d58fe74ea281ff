"""attentive: the Transformer from its parts.

Public API::

    import attentive
    attentive.presets()                       # names of model presets
    model = attentive.build("transformer-base")
    attentive.save(model, "ckpt/")            # safetensors + config.json, atomic
    model = attentive.load("ckpt/")
    lm = attentive.from_pretrained("smollm2")  # any model spec: a short name, run folder, GGUF, HF folder, hub id
    out = attentive.generate(lm.model, lm.tokenizer, "ROMEO:", max_new_tokens=100, seed=1)  # decoder LMs
"""

from ._runtime import prepare as _prepare_runtime

_prepare_runtime()  # before torch loads: OpenMP's threads wait passively (see _runtime.py)

from .config import build, build_model, load_config, preset_config, presets  # noqa: E402
from .checkpoint import load_model as load, save_model as save  # noqa: E402
from .interop.resolve import from_pretrained  # one way in: every model spec, in our classes  # noqa: E402
from .decode.generate import generate  # text from decoder-only language models  # noqa: E402

__version__ = "0.2.0"

__all__ = [
    "build",
    "build_model",
    "from_pretrained",
    "generate",
    "load",
    "load_config",
    "preset_config",
    "presets",
    "save",
    "__version__",
]
