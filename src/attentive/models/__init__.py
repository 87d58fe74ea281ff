"""Model families: thin compositions of the layer library. Importing registers them all."""

from .decoder_lm import DecoderLM, DecoderLMConfig
from .encoder_decoder import EncoderDecoder, EncoderDecoderConfig

__all__ = ["DecoderLM", "DecoderLMConfig", "EncoderDecoder", "EncoderDecoderConfig"]
