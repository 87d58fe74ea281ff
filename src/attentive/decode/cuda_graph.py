"""Decoding with one fixed-shape step: static KV cache, optional torch.compile, CUDA graph replay.

A decode step of a small model is hundreds of tiny kernels; launched one by one from Python,
their launch cost, not the GPU, sets the speed (gpt-fast's observation). ``StaticDecoder``
makes every step identical so it can be recorded once and replayed:

* a ``StaticCache`` written at ``cache_position`` (a tensor), so the slot, the causal mask and
  the positions are data in device memory, not Python ints baked into the graph;
* the step does everything in place: mark the new slot visible, run the model on one token per
  row, choose the next token (argmax, or a Gumbel-max draw for sampling), write it as the next
  input, advance position and slot;
* on CUDA the step is captured in a ``torch.cuda.CUDAGraph`` and each new token is one
  ``graph.replay()``, with no host synchronisation until the end; elsewhere it runs eagerly
  (or compiled), which is what the CPU tests check against the dynamic cache.

The prompt (prefill) has its own length, so it runs once, uncaptured. Rows stop at a stop token
only in what is returned: the graph keeps a fixed batch and runs ``max_new_tokens`` steps, and
``check_every`` lets a batch whose rows have all stopped end early at a cost of one sync per
check. The model is a ``DecoderLM`` (or anything called as
``model(ids, key_mask=, positions=, cache=) -> logits``, with the config fields
``make_static_cache`` reads).

Dimension names: B batch, P prompt length, L cache slots (prompt + new tokens), V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .sampling import decode_head, last_logits, left_pad, make_static_cache, positions_from_mask


@dataclass
class StaticDecodeOutput:
    tokens: list[list[int]]  # generated ids per row, cut before the first stop token
    steps: int  # decode steps run (graph replays on CUDA)


class StaticDecoder:
    """Greedy or sampled decoding for a fixed batch size and cache length, graph-captured on CUDA.

    ``compile=True`` runs the model forward through ``torch.compile(fullgraph=True)`` (fused
    kernels) before capture; anything else true is taken as the compile backend (tests pass
    ``"aot_eager"``). ``cuda_graph`` defaults to True on CUDA. ``packed_head`` (default: on CPU)
    computes the logits from a ``PackedProjection`` copy of the head (``decode_head``). Reuse one
    decoder for many prompts of the same batch size: the graph is captured on the first ``generate``.
    """

    def __init__(
        self, model, batch_size: int, max_len: int, *, compile=False, cuda_graph: bool | None = None,
        temperature: float = 0.0, top_k: int | None = None, dtype: torch.dtype | None = None,
        packed_head: bool | None = None,
    ):
        param = next(model.parameters())
        self.model, self.device = model, param.device
        self.batch_size, self.max_len = batch_size, max_len
        self.temperature, self.top_k = temperature, top_k
        self.cuda_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        if self.cuda_graph and self.device.type != "cuda":
            raise ValueError("cuda_graph=True needs the model on a CUDA device")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        self.cache = make_static_cache(model, batch_size, max_len, self.device, dtype or param.dtype)
        self.head = decode_head(model, self.device, packed_head)  # packed copy on CPU by default
        long = dict(dtype=torch.long, device=self.device)
        # the step's state: every tensor here keeps its storage for the graph's lifetime
        self.slot = torch.zeros(1, **long)  # cache slot the step writes
        self.tokens = torch.zeros(batch_size, 1, **long)  # (B, 1) the step's input
        self.positions = torch.zeros(batch_size, 1, **long)  # (B, 1)
        self.key_mask = torch.zeros(batch_size, max_len, dtype=torch.bool, device=self.device)  # (B, L)
        self.generated = torch.zeros(batch_size, max_len, **long)  # (B, L) the token fed at each slot
        self.forward = self._forward
        if compile:
            backend = "inductor" if compile is True else compile
            self.forward = torch.compile(self._forward, fullgraph=True, dynamic=False, backend=backend)
        self.graph: torch.cuda.CUDAGraph | None = None

    # ------------------------------------------------------------------ the step
    def _forward(self, tokens: Tensor, positions: Tensor, key_mask: Tensor) -> Tensor:
        return last_logits(self.model, self.head, tokens, key_mask=key_mask, positions=positions,
                           cache=self.cache)  # (B, V)

    def _choose(self, logits: Tensor) -> Tensor:
        """Next tokens (B,) from logits (B, V), without leaving the device."""
        if self.temperature == 0:
            return logits.argmax(dim=-1)
        logits = logits.float() / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        # Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits)
        noise = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-20, 1.0)))
        return (logits + noise).argmax(dim=-1)

    def _step(self) -> None:
        """Feed ``tokens`` at ``slot``; leave the next token in ``tokens``, advanced by one slot."""
        self.key_mask.index_fill_(1, self.slot, True)  # the new token sees itself
        self.cache.cache_position = self.slot
        nxt = self._choose(self.forward(self.tokens, self.positions, self.key_mask))  # (B,)
        self.tokens.copy_(nxt[:, None])
        self.positions.add_(1)
        self.slot.add_(1)
        self.generated.index_copy_(1, self.slot.clamp(max=self.max_len - 1), nxt[:, None])

    def _capture(self) -> None:
        """Warm up on a side stream (compilation, allocator), then record one step."""
        saved = [t.clone() for t in self._state()]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._step()
                self._restore(saved)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()
        self._restore(saved)  # capture ran nothing, but keep the state exact anyway

    def _state(self) -> list[Tensor]:
        return [self.slot, self.tokens, self.positions, self.key_mask, self.generated, self.cache.keys,
                self.cache.values]

    def _restore(self, saved: list[Tensor]) -> None:
        for dst, src in zip(self._state(), saved):
            dst.copy_(src)

    # ------------------------------------------------------------------ prefill + loop
    @torch.no_grad()
    def prefill(self, ids: Tensor, real: Tensor | None = None) -> None:
        """Encode the (left-padded) prompts ``ids (B, P)``; leave the first new token in ``tokens``."""
        batch, prompt_len = ids.shape
        if batch != self.batch_size:
            raise ValueError(f"this decoder was built for batch {self.batch_size}, got {batch} prompts")
        if prompt_len >= self.max_len:
            raise ValueError(f"prompt of {prompt_len} tokens leaves no room in a cache of {self.max_len} slots")
        real = torch.ones_like(ids, dtype=torch.bool) if real is None else real
        self.cache.reset()
        self.key_mask.zero_()
        self.key_mask[:, :prompt_len] = real
        self.cache.cache_position = torch.arange(prompt_len, device=self.device)
        # the head on the last prompt position only (at a 50k vocabulary, most of a prefill's work)
        logits = last_logits(self.model, self.head, ids, key_mask=self.key_mask, positions=positions_from_mask(real),
                             cache=self.cache)
        nxt = self._choose(logits)  # (B,)
        self.tokens.copy_(nxt[:, None])
        self.positions.copy_(real.sum(dim=-1, keepdim=True))
        self.slot.fill_(prompt_len)
        self.generated.zero_()
        self.generated[:, prompt_len] = nxt

    @torch.no_grad()
    def generate_ids(self, ids: Tensor, max_new_tokens: int, real: Tensor | None = None, *,
                     stop_tokens: Sequence[int] = (), check_every: int = 0) -> tuple[Tensor, int]:
        """Prompts ``ids (B, P)`` -> new tokens ``(B, max_new_tokens)`` (not cut at stop tokens) and
        the number of steps run. ``check_every`` > 0 ends early once every row has stopped."""
        prompt_len = ids.shape[1]
        if prompt_len + max_new_tokens > self.max_len:
            raise ValueError(
                f"{prompt_len} prompt + {max_new_tokens} new tokens exceed the cache's {self.max_len} slots"
            )
        was_training = self.model.training
        self.model.eval()
        try:
            self.prefill(ids, real)
            if self.cuda_graph and self.graph is None:
                self._capture()
            stops = torch.tensor(list(stop_tokens), dtype=torch.long, device=self.device)
            steps = 0
            for steps in range(1, max_new_tokens):  # the prefill chose the first new token
                if self.graph is not None:
                    self.graph.replay()
                else:
                    self._step()
                if check_every and stops.numel() and steps % check_every == 0:
                    new = self.generated[:, prompt_len:prompt_len + steps + 1]
                    if bool(torch.isin(new, stops).any(dim=1).all()):
                        break
        finally:
            self.model.train(was_training)
        out = self.generated[:, prompt_len:prompt_len + max_new_tokens].clone()
        return out, steps

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, *, pad_id: int = 0,
                 stop_tokens: Sequence[int] = (), check_every: int = 0) -> StaticDecodeOutput:
        """Token-id prompts (any lengths, left-padded) -> generated ids per row, cut at stop tokens."""
        ids, real = left_pad(prompts, pad_id, self.device)
        new, steps = self.generate_ids(ids, max_new_tokens, real, stop_tokens=stop_tokens, check_every=check_every)
        rows = []
        stop = {int(t) for t in stop_tokens}
        for row in new[:, :max(steps + 1, 1) if max_new_tokens else 0].tolist():
            cut = next((i for i, t in enumerate(row) if t in stop), len(row))
            rows.append(row[:cut])
        return StaticDecodeOutput(rows, steps)
