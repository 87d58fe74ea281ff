"""Model families: thin compositions of the layer library. Which module holds each family and
each preset is listed in ``attentive.config`` (FAMILIES, PRESETS); importing this package imports them all."""

from .decision import DecisionTransformer, DecisionTransformerConfig
from .decoder_lm import DecoderLM, DecoderLMConfig
from .encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from .encoder import Encoder, EncoderConfig
from .speech import SpeechConfig, SpeechModel
from .vit import VisionTransformer, ViTConfig

__all__ = [
    "DecisionTransformer",
    "DecisionTransformerConfig",
    "DecoderLM",
    "DecoderLMConfig",
    "EncoderDecoder",
    "EncoderDecoderConfig",
    "Encoder",
    "EncoderConfig",
    "SpeechConfig",
    "SpeechModel",
    "VisionTransformer",
    "ViTConfig",
]
