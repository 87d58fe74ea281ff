"""``beams.continuing`` keeps candidates best first: a stable sort, seen at the widths where an
unstable sort reorders ties (CPU sorts of 64 and more columns; found by mutation testing)."""

from __future__ import annotations

import torch

from attentive.decode.beams import continuing


def test_continuing_candidates_keep_their_best_first_order_at_any_width():
    g = torch.Generator().manual_seed(0)
    for width in (4, 64, 1000):
        stopped = torch.rand(6, width, generator=g) < 0.5  # (b, K), candidates best first
        k = width // 4
        got = continuing(stopped, k)
        for row in range(stopped.shape[0]):
            expected = [i for i in range(width) if not stopped[row, i]] + [i for i in range(width) if stopped[row, i]]
            assert got[row].tolist() == expected[:k], (width, row)
