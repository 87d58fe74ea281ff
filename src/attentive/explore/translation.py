"""Translation models (``EncoderDecoder`` with its tokenizers, e.g. runs/multi30k-de-en).

``analyze(text)`` translates with beam search (the run's own settings), recording the
hypotheses and scores after every step (``beam_search(on_step=...)``), then runs the encoder
and the decoder over the source and the translation (teacher forcing, as ``Translator.
cross_attention`` does) under the attention tap: encoder self-attention over the source,
decoder self-attention over the decoder's input (``<s>`` and the output), and cross-attention
from each output token to the source.

Dimension names: S source tokens, T output tokens (+ 1 for ``<s>`` / ``</s>``).
"""

from __future__ import annotations

import math

import torch

from ..decode.search import BeamStep, SearchConfig, beam_search
from ..decode.translator import Translator
from .subject import Analysis, Primary, Subject, token_label

MAX_BEAM_STEPS_SHOWN = 64


class TranslationModel(Subject):
    family = "translation"
    views = ("head", "model", "cross", "beams", "ideas")
    labels = {
        "encoder": "encoder self-attention",
        "decoder": "decoder self-attention (causal)",
        "cross": "cross-attention (output -> source)",
    }

    def __init__(self, translator: Translator, name: str):
        super().__init__(translator.model, translator.tokenizer, name)
        self.translator = translator

    @property
    def search_config(self) -> SearchConfig:
        return self.translator.search_config()

    def _tokenize(self, text: str) -> list[int]:
        return self.translator.source_tokenizer.encode(text.strip())

    def info(self) -> dict:
        info = super().info()
        info.update(
            layers_encoder=self.config.num_encoder_layers,
            layers_decoder=self.config.num_decoder_layers,
            beam_size=self.search_config.beam_size,
            pair=_pair(self.translator.info),
        )
        return info

    def _analyze(self, text: str, key: str) -> Analysis:
        tr, model = self.translator, self.model
        src_ids = self.encode_text(text, self._tokenize)
        src = torch.tensor([src_ids], device=self.device)  # (1, S)
        steps: list[BeamStep] = []
        config = self.search_config
        out = beam_search(
            model, src, config, bos_id=tr.tokenizer.bos_id, eos_id=tr.tokenizer.eos_id, on_step=steps.extend
        )
        out_ids = out.tokens[0]
        source = [token_label(tr.source_tokenizer, i) for i in src_ids]
        dec_in = [tr.tokenizer.bos_id, *out_ids]
        inputs = self.labels_of(dec_in)
        predicted = self.labels_of(out_ids) + [token_label(tr.tokenizer, tr.tokenizer.eos_id)]
        stores = self.stores_for(
            {
                ("encoder", "self"): (source, source),
                ("decoder", "self"): (inputs, inputs),
                ("decoder", "cross"): (predicted, source),
            }
        )
        valid = src != model.config.pad_id  # (1, S)
        with self.tapped(stores), self.stream_tap(model.encoder) as stream:
            memory = model.encode(src, valid).hidden  # (1, S, D)
            model.decode(torch.tensor([dec_in], device=self.device), memory, valid)
        primary = Primary(
            src, source, model.encoder, "encoder", model.src_embed, lambda ids, key_mask: model.encode(ids, key_mask)
        )
        extra = {
            "source": text,
            "translation": tr.tokenizer.decode(out_ids),
            "score": out.scores[0],
            "beam_size": config.beam_size,
            "alpha": config.alpha,
            "beams": self._beams(steps),
        }
        return Analysis(key, self.family, {s.name: s for s in stores.values()}, primary, extra, streams=stream.layers)

    def _beams(self, steps: list[BeamStep]) -> list[dict]:
        """Each step's live and finished hypotheses as text, for the beam view."""
        tok = self.translator.tokenizer

        def hyp(tokens: list[int], score: float, final: bool) -> dict:
            shown = [t for t in tokens if t != tok.eos_id]
            return {
                "tokens": self.labels_of(tokens),
                "text": tok.decode(shown),
                "score": score,
                "ends": bool(tokens) and tokens[-1] == tok.eos_id,
                "finished": final,
            }

        out = []
        for s in steps[:MAX_BEAM_STEPS_SHOWN]:  # at the length limit only the end token is finite: no live ones
            out.append(
                {
                    "step": s.step,
                    "live": [hyp(t, sc, False) for t, sc in s.live if math.isfinite(sc)],
                    "finished": sorted((hyp(t, sc, True) for t, sc in s.finished), key=lambda h: -h["score"]),
                }
            )
        return out


def _pair(info: dict) -> str | None:
    src, tgt = info.get("src_lang"), info.get("tgt_lang")
    return f"{src}->{tgt}" if src and tgt else None
