"""Mask helpers: one boolean convention (True = may attend), shapes checked loudly."""

from __future__ import annotations

import pytest
import torch

from attentive.nn import attention, causal_mask, combine_masks, key_mask, lengths_mask, padding_mask, segment_mask
from attentive.nn.masks import check_mask


def test_padding_mask_marks_real_tokens():
    ids = torch.tensor([[5, 6, 0, 0], [7, 0, 8, 0]])
    mask = padding_mask(ids, pad_id=0)
    assert mask.dtype == torch.bool and mask.shape == (2, 1, 1, 4)
    assert mask[:, 0, 0].tolist() == [[True, True, False, False], [True, False, True, False]]


def test_padding_mask_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        padding_mask(torch.tensor([1, 2, 0]), 0)


def test_lengths_mask_right_padding():
    mask = lengths_mask(torch.tensor([1, 3, 0]), max_len=4)
    assert mask.shape == (3, 1, 1, 4)
    assert mask[:, 0, 0].tolist() == [
        [True, False, False, False],
        [True, True, True, False],
        [False, False, False, False],
    ]
    assert lengths_mask(torch.tensor([2, 3])).shape[-1] == 3  # default: longest


def test_key_mask_expands_and_validates():
    valid = torch.tensor([[True, False, True]])
    assert key_mask(valid).shape == (1, 1, 1, 3)
    assert key_mask(valid)[0, 0, 0].tolist() == [True, False, True]
    with pytest.raises(ValueError, match="int64"):
        key_mask(torch.tensor([[1, 0, 1]]))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        key_mask(torch.tensor([True, False, True]))


def test_causal_mask_values():
    mask = causal_mask(3)
    assert mask.shape == (1, 1, 3, 3) and mask.dtype == torch.bool
    assert mask[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, True]]


@pytest.mark.parametrize("past,q_len", [(0, 4), (2, 3), (5, 1), (4, 2)])
def test_causal_mask_with_past_is_bottom_right_slice_of_full(past, q_len):
    full = causal_mask(past + q_len)
    assert torch.equal(causal_mask(q_len, past=past), full[:, :, past:, :])


def test_causal_mask_hides_unfilled_static_slots():
    # 2 cached + 1 new token in a 6-slot static cache: slots 3..5 are in the future
    mask = causal_mask(1, 6, past=2)
    assert mask[0, 0, 0].tolist() == [True, True, True, False, False, False]


def test_combine_masks_is_logical_and_and_skips_none():
    pad = padding_mask(torch.tensor([[1, 1, 0]]), 0)
    causal = causal_mask(3)
    combined = combine_masks(pad, None, causal)
    assert combined.shape == (1, 1, 3, 3)
    assert combined[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    assert combine_masks(None, None) is None
    assert combine_masks(None, causal) is causal


def test_check_mask_accepts_broadcastable():
    check_mask(torch.ones(1, 1, 1, 5, dtype=torch.bool), 2, 4, 3, 5)
    check_mask(torch.ones(2, 4, 3, 5, dtype=torch.bool), 2, 4, 3, 5)


def test_wrong_shape_mask_error_names_shapes():
    q = k = v = torch.randn(2, 4, 3, 8)
    bad = torch.ones(2, 1, 3, 7, dtype=torch.bool)
    with pytest.raises(ValueError) as err:
        attention(q, k, v, mask=bad)
    msg = str(err.value)
    assert "(2, 1, 3, 7)" in msg and "(2, 4, 3, 3)" in msg and "k_len" in msg
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        attention(q, k, v, mask=torch.ones(3, 3, dtype=torch.bool))


def test_non_bool_mask_rejected():
    q = k = v = torch.randn(1, 2, 3, 8)
    with pytest.raises(ValueError, match="bool"):
        attention(q, k, v, mask=torch.ones(1, 1, 3, 3))  # float 0/1 mask: ambiguous, refused
    with pytest.raises(ValueError, match="bool"):
        attention(q, k, v, mask=torch.ones(1, 1, 3, 3, dtype=torch.long), impl="reference")


def test_segment_mask_keeps_packed_examples_apart():
    seg = torch.tensor([[1, 1, 2, 2, 2, 0]])  # two examples and a pad
    mask = segment_mask(seg)
    assert mask.shape == (1, 1, 6, 6) and mask.dtype == torch.bool
    assert mask[0, 0, 2].tolist() == [False, False, True, True, True, False]
    assert mask[0, 0, 0].tolist() == [True, True, False, False, False, False]
    assert segment_mask(seg, q_len=2)[0, 0].tolist() == mask[0, 0, 4:].tolist()  # the last queries
    with pytest.raises(ValueError, match="integer tensor of shape"):
        segment_mask(seg.float())
