"""GGUF block decoding held to the ``gguf`` library's own dequantisation, bit for bit.

``read_blocks`` decodes Q8_0 / Q4_0 / Q4_1 blocks itself (values, scales and minimums kept as
they are for the quantised linear layers), so each kind is checked against
``gguf.quants.dequantize`` on blocks that hold every extreme: nibbles 0 and 15 in both halves of
a byte, int8 -128 and 127, negative scales and minimums. ``dequantize_tensor`` is checked for
every type attentive reads (shape order included: GGUF lists dims reversed).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from attentive.interop.gguf import BLOCK_TYPES, SUPPORTED_TYPES, dequantize_tensor, read_blocks  # noqa: E402

ROWS, COLS = 6, 128  # 4 blocks of 32 a row; K-quants need 256 a block, so they get COLS_K
COLS_K = 512


def _raw_blocks(kind: str, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Random blocks of ``kind`` as bytes ``(rows, cols // block * bytes)`` with finite fp16
    scales and minimums where the layout is known, and the extreme quantised values present."""
    qtype = gguf.GGMLQuantizationType[kind]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    if kind in ("F32", "F16", "BF16"):
        dtype = {"F32": np.float32, "F16": np.float16, "BF16": np.float32}[kind]
        values = rng.standard_normal((rows, cols)).astype(dtype)
        raw = values.view(np.uint8)
        if kind == "BF16":
            raw = raw.reshape(rows, cols, 4)[..., 2:].reshape(rows, cols * 2)  # the high halves
        return np.ascontiguousarray(raw)
    raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    if kind in BLOCK_TYPES:
        scales = rng.standard_normal((rows, cols // block)).astype(np.float16)
        raw[..., 0:2] = scales[..., None].view(np.uint8)
        if kind == "Q4_1":
            mins = rng.standard_normal((rows, cols // block)).astype(np.float16)
            raw[..., 2:4] = mins[..., None].view(np.uint8)
        start = {"Q8_0": 2, "Q4_0": 2, "Q4_1": 4}[kind]
        # Extremes: int8 -128 / 127 (Q8_0); bytes 0x00, 0xFF, 0x0F, 0xF0 (both nibbles 0 / 15).
        extremes = [0x80, 0x7F, 0x00, 0xFF] if kind == "Q8_0" else [0x00, 0xFF, 0x0F, 0xF0]
        raw[..., start : start + len(extremes)] = np.array(extremes, dtype=np.uint8)
    else:
        # K-quants and Q5_x: fp16 fields at various offsets; make every fp16-aligned pair finite
        # by clearing the exponent's top bit of each odd byte (|x| < 2), so no NaN / inf appears.
        raw[..., 1::2] &= 0xBF
    return raw.reshape(rows, -1)


def _write_read(tmp_path, tensors: dict[str, tuple[np.ndarray, str]]):
    path = tmp_path / "blocks.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    for name, (raw, kind) in tensors.items():
        writer.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType[kind])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {t.name: t for t in gguf.GGUFReader(str(path)).tensors}


@pytest.mark.parametrize("kind", BLOCK_TYPES)
def test_read_blocks_dequantise_as_gguf_does_bit_for_bit(kind, tmp_path):
    rng = np.random.default_rng(0)
    raw = _raw_blocks(kind, ROWS, COLS, rng)
    tensor = _write_read(tmp_path, {"w": (raw, kind)})["w"]
    blocks = read_blocks(tensor)
    assert blocks is not None and blocks.kind == kind and tuple(blocks.shape) == (ROWS, COLS)
    expected = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[kind]).reshape(ROWS, COLS)
    got = blocks.dequantize()
    assert got.dtype == torch.float32
    # The extremes are there: nibbles 0 and 15 (Q4), -128 and 127 (Q8).
    values = blocks.values.to(torch.int16)
    lo, hi = (-128, 127) if kind == "Q8_0" else (0, 15)
    assert int(values.min()) == lo and int(values.max()) == hi
    np.testing.assert_array_equal(got.numpy(), expected.astype(np.float32))


def test_q4_0_is_centred_on_eight():
    """Q4_0: ``d * (q - 8)``: nibble 0 is ``-8 d``, nibble 15 is ``7 d``, nibble 8 is 0."""
    d = np.float16(0.5)
    block = np.zeros(18, dtype=np.uint8)
    block[0:2] = np.array([d]).view(np.uint8)
    block[2] = 0xF0  # value 0 -> nibble 0, value 16 -> nibble 15
    block[3] = 0x88  # values 1 and 17 -> nibble 8
    block[4:] = 0x88
    expected = gguf.quants.dequantize(block[None], gguf.GGMLQuantizationType.Q4_0).reshape(-1)
    assert expected[0] == -4.0 and expected[16] == 3.5 and expected[1] == 0.0

    class Tensor:  # the ReaderTensor fields read_blocks reads
        tensor_type = gguf.GGMLQuantizationType.Q4_0
        shape = np.array([32, 1])
        data = block

    got = read_blocks(Tensor()).dequantize().reshape(-1).numpy()
    np.testing.assert_array_equal(got, expected)


def test_every_supported_type_dequantises_as_gguf_does(tmp_path):
    rng = np.random.default_rng(1)
    raws = {}
    for kind in SUPPORTED_TYPES:
        block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]][0]
        cols = COLS_K if block == 256 else COLS
        raws[kind] = (_raw_blocks(kind, ROWS, cols, rng), kind)
    tensors = _write_read(tmp_path, raws)
    for kind, (raw, _) in raws.items():
        got = dequantize_tensor(tensors[kind])
        cols = COLS_K if gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]][0] == 256 else COLS
        assert tuple(got.shape) == (ROWS, cols), kind
        expected = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[kind]).reshape(ROWS, cols)
        np.testing.assert_array_equal(got.numpy(), expected.astype(np.float32), err_msg=kind)
        if kind not in BLOCK_TYPES:
            assert read_blocks(tensors[kind]) is None, kind


def test_unsupported_types_are_refused_in_one_line(tmp_path):
    rng = np.random.default_rng(2)
    kind = "Q8_1"  # a block type attentive does not read
    size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]][1]
    raw = rng.integers(0, 256, size=(2, 2 * size), dtype=np.uint8)
    raw[..., 1::2] &= 0xBF
    tensor = _write_read(tmp_path, {"w": (raw, kind)})["w"]
    with pytest.raises(ValueError, match=r"'w' has GGUF type Q8_1; supported: F32"):
        dequantize_tensor(tensor)
