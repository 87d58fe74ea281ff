"""Mask helpers: properties over random shapes and contents (hypothesis).

Each helper is checked against a plain-Python (or numpy) construction of what it should return,
never against itself, so a wrong comparison or off-by-one in the helper shows up.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attentive.nn import causal_mask, combine_masks, key_mask, lengths_mask, padding_mask
from attentive.nn.masks import check_mask

# database=None: no .hypothesis/ example database in the checkout; failures print their inputs
PROPERTY = settings(max_examples=100, deadline=None, database=None)

DIM_NAMES = ("batch", "heads", "q_len", "k_len")
sizes = st.integers(1, 4)
targets = st.tuples(sizes, sizes, sizes, sizes)  # (B, H, Tq, Tk)


def _rows(mask: torch.Tensor) -> list[list[bool]]:
    """(B, 1, 1, T) key mask -> its B rows as Python lists."""
    return mask[:, 0, 0].tolist()


# ----------------------------------------------------------------------------- padding / lengths / key


@PROPERTY
@given(
    tokens=st.integers(1, 9).flatmap(
        lambda t: st.lists(st.lists(st.integers(0, 4), min_size=t, max_size=t), min_size=1, max_size=4)
    ),
    pad_id=st.integers(0, 4),
)
def test_padding_mask_is_true_exactly_on_non_pad_tokens(tokens, pad_id):
    mask = padding_mask(torch.tensor(tokens), pad_id)
    assert mask.dtype == torch.bool and mask.shape == (len(tokens), 1, 1, len(tokens[0]))
    assert _rows(mask) == [[token != pad_id for token in row] for row in tokens]


@PROPERTY
@given(
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=4),
    max_len=st.one_of(st.none(), st.integers(0, 9)),
)
def test_lengths_mask_is_true_exactly_on_the_first_length_positions(lengths, max_len):
    mask = lengths_mask(torch.tensor(lengths), max_len=max_len)
    width = max(lengths) if max_len is None else max_len  # default: the longest sequence
    assert mask.dtype == torch.bool and mask.shape == (len(lengths), 1, 1, width)
    assert _rows(mask) == [[position < length for position in range(width)] for length in lengths]


@PROPERTY
@given(
    valid=st.integers(1, 9).flatmap(
        lambda t: st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=1, max_size=4)
    )
)
def test_key_mask_and_padding_mask_agree_with_the_valid_tokens(valid):
    mask = key_mask(torch.tensor(valid))
    assert mask.shape == (len(valid), 1, 1, len(valid[0])) and _rows(mask) == valid
    tokens = torch.tensor([[7 if ok else 0 for ok in row] for row in valid])  # 0 = pad
    assert torch.equal(padding_mask(tokens, 0), mask)


# ----------------------------------------------------------------------------- combine_masks


@st.composite
def masks_for(draw, target, max_masks=4):
    """0..max_masks entries, each None or a random bool mask of a shape broadcastable to target."""
    out = []
    for _ in range(draw(st.integers(0, max_masks))):
        if draw(st.booleans()):
            out.append(None)
            continue
        shape = tuple(size if draw(st.booleans()) else 1 for size in target)
        bits = draw(st.lists(st.booleans(), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        out.append(torch.tensor(bits, dtype=torch.bool).reshape(shape))
    return out


@PROPERTY
@given(data=st.data(), target=targets)
def test_combine_masks_is_logical_and_with_none_as_identity(data, target):
    masks = data.draw(masks_for(target))
    result = combine_masks(*masks)
    present = [m for m in masks if m is not None]
    if not present:
        assert result is None  # nothing to combine: attend everywhere
        return
    # numpy, not torch: broadcast every mask to their common shape and AND elementwise
    arrays = np.broadcast_arrays(*(m.numpy() for m in present))
    want = np.logical_and.reduce(arrays) if len(arrays) > 1 else arrays[0]
    assert result.dtype == torch.bool
    assert tuple(result.shape) == want.shape
    assert (result.numpy() == want).all()
    # None anywhere, any number of times, changes nothing; one mask is returned as is
    with_nones = [None] + [x for m in present for x in (m, None)]
    assert torch.equal(combine_masks(*with_nones), result)
    if len(present) == 1:
        assert combine_masks(None, present[0], None) is present[0]


# ----------------------------------------------------------------------------- causal_mask


@PROPERTY
@given(q_len=st.integers(1, 9), past=st.integers(0, 9), extra=st.integers(0, 4))
def test_causal_mask_with_past_is_the_last_rows_of_the_full_causal_mask(q_len, past, extra):
    n = past + q_len
    full = causal_mask(n)
    assert full.dtype == torch.bool and full.shape == (1, 1, n, n)
    assert full[0, 0].tolist() == [[j <= i for j in range(n)] for i in range(n)]  # lower triangle
    tail = causal_mask(q_len, past=past)
    assert tail.shape == (1, 1, q_len, n)
    assert torch.equal(tail, full[:, :, past:, :])
    # a static cache longer than past + q_len: the slots beyond are never visible
    padded = causal_mask(q_len, n + extra, past=past)
    assert padded.shape == (1, 1, q_len, n + extra)
    assert torch.equal(padded[..., :n], tail) and not padded[..., n:].any()
    # the traced form (query slots as a tensor) builds the same mask
    slots = torch.arange(past, n)
    assert torch.equal(causal_mask(q_len, n + extra, q_slots=slots), padded)


# ----------------------------------------------------------------------------- check_mask


@PROPERTY
@given(target=targets, keep=st.tuples(*[st.booleans()] * 4))
def test_check_mask_accepts_every_broadcastable_shape(target, keep):
    shape = tuple(size if kept else 1 for size, kept in zip(target, keep))
    check_mask(torch.ones(shape, dtype=torch.bool), *target)  # must not raise


@st.composite
def non_broadcastable(draw):
    """(target, shape): a 4-dim shape with at least one size that is neither 1 nor the target's."""
    target = draw(targets)
    shape, first_bad = [], None
    bad_dims = draw(st.sets(st.integers(0, 3), min_size=1))
    for dim, want in enumerate(target):
        if dim in bad_dims:
            shape.append(draw(st.integers(2, 6).filter(lambda s, want=want: s != want)))
            first_bad = dim if first_bad is None else first_bad
        else:
            shape.append(draw(st.sampled_from([1, want])))
    return target, tuple(shape), DIM_NAMES[first_bad]


@PROPERTY
@given(case=non_broadcastable())
def test_check_mask_rejects_non_broadcastable_shapes_naming_the_dimension(case):
    target, shape, name = case
    with pytest.raises(ValueError) as err:
        check_mask(torch.ones(shape, dtype=torch.bool), *target)
    message = str(err.value)
    assert str(shape) in message and str(target) in message
    assert f"its {name} size is {shape[DIM_NAMES.index(name)]}" in message


@PROPERTY
@given(target=targets, ndim=st.sampled_from([0, 1, 2, 3, 5]), data=st.data())
def test_check_mask_rejects_wrong_rank_naming_the_shape(target, ndim, data):
    shape = tuple(data.draw(st.lists(st.sampled_from([1, 2, 3]), min_size=ndim, max_size=ndim)))
    with pytest.raises(ValueError, match="4 dims") as err:
        check_mask(torch.ones(shape, dtype=torch.bool), *target)
    assert str(shape) in str(err.value)


@PROPERTY
@given(
    target=targets,
    keep=st.tuples(*[st.booleans()] * 4),
    dtype=st.sampled_from(
        [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8, torch.int8]
    ),
)
def test_check_mask_rejects_non_bool_dtypes_naming_the_dtype(target, keep, dtype):
    shape = tuple(size if kept else 1 for size, kept in zip(target, keep))  # a good shape: only the dtype is wrong
    with pytest.raises(ValueError, match="bool") as err:
        check_mask(torch.ones(shape, dtype=dtype), *target)
    assert re.search(rf"\b{re.escape(str(dtype))}\b", str(err.value))
