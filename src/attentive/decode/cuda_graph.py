"""One decode step recorded as a CUDA graph and replayed for every new token.

A decode step of a small model is hundreds of tiny kernels; launched one by one from Python,
their launch cost, not the GPU, sets the speed (gpt-fast's observation). A ``static`` batch
makes every step identical: the static KV cache is written at a position held in device memory,
the key mask is a fixed buffer, and the token and position inputs are copied into fixed
buffers. So the step can be captured once and each new token is one ``graph.replay()``.
Choosing the token (processors, sampler) stays outside the graph, so a graph run draws the same
tokens as an eager one.

Dimension names: R rows, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor


class CUDAGraphStep:
    """The static step of ``batch`` (a ``DecodeBatch`` with ``cache="cuda_graph"``), captured on
    first use after a warm-up on a side stream (compilation, allocator)."""

    def __init__(self, batch):
        self.batch = batch
        rows = batch.rows
        self.tokens = torch.zeros((rows, 1), dtype=torch.long, device=batch.device)  # (R, 1)
        self.positions = torch.zeros((rows, 1), dtype=torch.long, device=batch.device)  # (R, 1)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: Tensor | None = None  # (R, V), written by every replay

    def _run(self) -> Tensor:
        b = self.batch
        return b._static_forward(self.tokens, self.positions, b.valid, b.memory, b.memory_key_mask)

    def _state(self) -> list[Tensor]:
        cache = self.batch.cache
        return [cache.keys, cache.values, cache.position, *[t for kv in cache._cross.values() for t in kv]]

    def _capture(self) -> None:
        cache = self.batch.cache
        saved = [t.clone() for t in self._state()]
        length = cache.length
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._run()
                for dst, src in zip(self._state(), saved):
                    dst.copy_(src)
                cache.length = length
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._run()
        for dst, src in zip(self._state(), saved):  # capture records; keep the state exact anyway
            dst.copy_(src)
        cache.length = length

    def replay(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """Feed ``tokens (R, 1)`` at ``positions (R, 1)``; the logits ``(R, V)`` of the next token."""
        self.tokens.copy_(tokens)
        self.positions.copy_(positions)
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.logits.clone()
