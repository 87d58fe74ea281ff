"""Decoder-only language models (``DecoderLM``: a trained shakespeare-char run, SmolLM2, ...).

``analyze(text)`` runs the causal stack over the text's tokens under the attention tap (the
head and model views) and a stream tap that keeps each layer's output, so the logit lens can
ask, for any position, what each layer's residual stream would predict: the layer's output
through the model's own final norm and softmax head (nostalgebraist's "logit lens", 2020).

The generation stepper lives in ``stepper.py``.

Dimension names: L layers, T tokens, D model width, V vocabulary.
"""

from __future__ import annotations

import torch

from .subject import Analysis, Primary, Subject

LENS_TOP = 5


class LanguageModel(Subject):
    family = "lm"
    views = ("head", "model", "generate", "lens", "ideas")
    labels = {"stack": "self-attention (causal)"}

    def info(self) -> dict:
        return {**super().info(), "layers": self.config.num_layers}

    def encode(self, text: str) -> list[int]:
        return self.encode_text(text, self.tokenizer.encode)

    def _analyze(self, text: str, key: str) -> Analysis:
        ids = self.encode(text)
        tokens = self.labels_of(ids)
        stores = self.stores_for({("stack", "self"): (tokens, tokens)})
        x = torch.tensor([ids], device=self.device)  # (1, T)
        with self.tapped(stores), self.stream_tap(self.model.stack, keep_outputs=True) as stream:
            self.model.decode(x)
        model = self.model
        primary = Primary(
            x, tokens, model.stack, "stack", model.embed, lambda ids, key_mask: model.decode(ids, key_mask=key_mask)
        )
        outputs = torch.cat([o for o in stream.outputs])  # (L, T, D)
        return Analysis(
            key,
            self.family,
            {s.name: s for s in stores.values()},
            primary,
            streams=stream.layers,
            layer_outputs=outputs,
        )

    @torch.no_grad()
    def logit_lens(self, analysis: Analysis, position: int, top: int = LENS_TOP) -> dict:
        """For ``position``: each layer's output read through the final norm and the head."""
        outputs = analysis.layer_outputs  # (L, T, D)
        steps = outputs.shape[1]
        if not -steps <= position < steps:
            raise ValueError(f"position {position} is out of range: the input has {steps} tokens")
        position %= steps
        stack, head = self.model.stack, self.model.head
        with self.lock:
            hidden = outputs[:, position]  # (L, D)
            if stack.final_norm is not None:
                hidden = stack.final_norm(hidden)
            probs = head(hidden).float().softmax(dim=-1)  # (L, V)
        values, index = probs.topk(top, dim=-1)  # (L, top)
        layers = []
        for layer, (vals, ids) in enumerate(zip(values.tolist(), index.tolist())):
            layers.append(
                {"layer": layer, "top": [{"id": i, "token": self.labels_of([i])[0], "p": p} for i, p in zip(ids, vals)]}
            )
        following = analysis.primary.inputs[0, position + 1].item() if position + 1 < steps else None
        return {
            "position": position,
            "token": analysis.primary.tokens[position],
            "layers": layers,
            "next": None if following is None else {"id": following, "token": self.labels_of([following])[0]},
            "final_norm": stack.final_norm is not None,
        }
