"""Fuzzing the binary model readers: every mutated file ends in a load or a one-line error.

Seeds are real files made small (a few KB): a 1-layer LLaMA exported to GGUF (f32 and q8_0), the
same model saved as an attentive checkpoint and exported as a Hugging Face folder, and a 1+1-layer
Whisper in CTranslate2's ``model.bin`` layout. Hypothesis mutates them (fixed seed: the same
inputs every run) by their structure (a header number set to 0, -1, 2**63, the file size...; a
safetensors header's dtype, shape or offsets; a config.json value) and by their bytes (truncated
at any offset, flipped, spliced). Each input is read in-process under an address-space limit
(``memory_limit``): a reader must check sizes against the file before it allocates.

The same mutations run for minutes in a guarded child process in
``benchmarks/reliability/fuzz_readers.py``; below them, one named test per bug the fuzzing found.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import attentive
from attentive.checkpoint import CheckpointError
from attentive.interop.ctranslate2 import read_ct2_folder, read_ct2_model, whisper_ct2_to_hf

gguf = pytest.importorskip("gguf")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "reliability"))
import fuzz_readers as fz  # noqa: E402


def corpus(examples: int) -> settings:
    """A fixed corpus: the same ``examples`` inputs every run (derandomized, no example database),
    no per-example deadline (the machine is shared; a hang is caught by pytest's timeout)."""
    return settings(
        derandomize=True,
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


HEADROOM = 1 << 30  # address space a read may add: far beyond any seed (KBs), far below a runaway size


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return fz.build_seeds(tmp_path_factory.mktemp("seeds"))


@contextmanager
def memory_limit(extra: int = HEADROOM):
    """Cap this process's address space at what it holds plus ``extra`` while a reader runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        held = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (held + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def outcome(read, path: Path) -> str:
    """Run ``read()``: "load", or "error" for a one-line ValueError/OSError naming ``path``;
    anything else fails the test with the input's description."""
    try:
        with memory_limit():
            read()
    except (ValueError, OSError) as err:
        message = str(err)
        assert "\n" not in message.strip(), f"several lines: {message!r}"
        assert str(path) in message or path.name in message, f"does not name {path}: {message!r}"
        return "error"
    return "load"


def error_of(read, path: Path, match: str) -> str:
    """The one-line error ``read()`` must end in, matching ``match``."""
    assert outcome(read, path) == "error"
    with pytest.raises((ValueError, OSError), match=match) as err:
        read()
    return str(err.value)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def copy_folder(source: Path, dest: Path) -> Path:
    import shutil

    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest)
    return dest


# ============================================================================ the corpora (default suite)


@corpus(150)
@given(rng=st.randoms(use_true_random=False))
def test_gguf_mutations(seeds, tmp_path, rng):
    source = seeds / rng.choice(["f32.gguf", "q8_0.gguf"])
    data = source.read_bytes()
    if rng.random() < 0.7:
        data = fz.mutate_fields(data, fz.gguf_fields(data), rng, count=rng.choice([1, 1, 2]))
    if rng.random() < 0.4:
        data = fz.mutate_bytes(data, rng)
    path = write(tmp_path, "model.gguf", data)
    outcome(lambda: attentive.from_pretrained(path), path)


@corpus(40)
@given(cut=st.floats(0.0, 1.0))
def test_gguf_truncated_anywhere(seeds, tmp_path, cut):
    data = (seeds / "q8_0.gguf").read_bytes()
    path = write(tmp_path, "model.gguf", data[: int(cut * (len(data) - 1))])
    assert outcome(lambda: attentive.from_pretrained(path), path) == "error"


@corpus(200)
@given(rng=st.randoms(use_true_random=False))
def test_checkpoint_mutations(seeds, tmp_path, rng):
    folder = fz.checkpoint_input(rng, Path(tempfile.mkdtemp(dir=tmp_path)))
    outcome(lambda: attentive.load(folder), folder)


@corpus(200)
@given(rng=st.randoms(use_true_random=False))
def test_hf_folder_mutations(seeds, tmp_path, rng):
    folder = fz.hf_input(rng, Path(tempfile.mkdtemp(dir=tmp_path)))
    outcome(lambda: attentive.from_pretrained(folder), folder)


@corpus(250)
@given(rng=st.randoms(use_true_random=False))
def test_ctranslate2_mutations(seeds, tmp_path, rng):
    path = fz.ct2_input(rng, tmp_path)
    outcome(lambda: whisper_ct2_to_hf(read_ct2_model(path)), path)


# ============================================================================ the bugs fuzzing found


@pytest.fixture
def tiny(seeds):
    return fz.tiny_llama(tied=False)


def _export(model, tok, path, monkeypatch=None, **writer_patches):
    """``export_gguf`` with some ``GGUFWriter.add_*`` methods given other values."""
    from attentive.interop.gguf_export import export_gguf

    with monkeypatch.context() as patch:
        for name, value in writer_patches.items():
            original = getattr(gguf.GGUFWriter, name)
            patch.setattr(gguf.GGUFWriter, name, lambda self, _v, _o=original, _new=value: _o(self, _new))
        return export_gguf(model, tok, path, dtype="q8_0")


def _set_field(data: bytes, role: str, value: int, which: int = 0) -> bytes:
    offset, fmt, _ = [f for f in fz.gguf_fields(data) if f[2] == role][which]
    return data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt) :]


def test_gguf_head_count_zero_or_not_dividing_the_rows(tiny, tmp_path, monkeypatch):
    """Was ZeroDivisionError (llama_config) and RuntimeError (unpermute_rotary's reshape)."""
    model, tok = tiny
    path = _export(model, tok, tmp_path / "zero.gguf", monkeypatch, add_head_count=0)
    error_of(lambda: attentive.from_pretrained(path), path, "head_count' is 0; expected a positive integer")
    path = _export(model, tok, tmp_path / "three.gguf", monkeypatch, add_head_count=3)
    error_of(lambda: attentive.from_pretrained(path), path, r"does not split into 3 heads")


def test_gguf_without_token_embedding(seeds, tmp_path):
    """Was KeyError 'model.embed_tokens.weight' when the tensor count leaves token_embd out."""
    data = (seeds / "f32.gguf").read_bytes()
    names = [t.name for t in gguf.GGUFReader(seeds / "f32.gguf").tensors]
    keep = names.index("token_embd.weight")
    path = write(tmp_path, "model.gguf", _set_field(data, "tensor_count", keep))
    error_of(lambda: attentive.from_pretrained(path), path, "no token_embd.weight")


def test_gguf_with_a_key_twice(seeds, tmp_path):
    """Was KeyError from the gguf package ('Duplicate general.name already in list')."""
    data = (seeds / "f32.gguf").read_bytes()
    assert data.count(b"general.type") == 1
    path = write(tmp_path, "model.gguf", data.replace(b"general.type", b"general.name"))
    error_of(lambda: attentive.from_pretrained(path), path, "not a readable GGUF file.*KeyError.*Duplicate")


def test_gguf_merge_of_tokens_not_in_the_list(tiny, tmp_path, monkeypatch):
    """Was a bare ``Exception`` from tokenizers ('Error while initializing BPE: Token `ra` out of vocabulary')."""
    model, tok = tiny
    path = _export(model, tok, tmp_path / "m.gguf", monkeypatch, add_token_merges=["zq qz"])
    error_of(lambda: attentive.from_pretrained(path), path, "GGUF merge 0 .* needs token 'zq', which is not in the")


def test_gguf_tensor_name_without_mapping_names_the_file(seeds, tmp_path):
    """Was 'LLaMA weight ... has no mapping' without the file (raised after the GGUF was read)."""
    data = (seeds / "f32.gguf").read_bytes()
    path = write(tmp_path, "model.gguf", data.replace(b"blk.0.attn_v.weight", b"blk.0.attn_v.w\x7feght"))
    message = error_of(lambda: attentive.from_pretrained(path), path, "has no mapping")
    assert message.startswith(str(path))


@pytest.mark.parametrize("key, what", [(b"tokenizer.ggml.pre", "string"), (b"tokenizer.ggml.tokens", "array")])
def test_gguf_string_or_array_length_past_the_end(seeds, tmp_path, key, what):
    """Was a 40-second loop in the gguf package (growing its lists) ending in SystemError: lengths
    are now checked against the file before the package reads the header."""
    data = (seeds / "f32.gguf").read_bytes()
    at = data.index(key) + len(key) + 4 + (4 if what == "array" else 0)  # past the key and its type (and item type)
    path = write(tmp_path, "model.gguf", data[:at] + struct.pack("<Q", 2**63 + 5) + data[at + 8 :])
    error_of(
        lambda: attentive.from_pretrained(path),
        path,
        f"not a readable GGUF file .*{key.decode()}.*past the end.*truncated or corrupt",
    )


@pytest.mark.parametrize(
    "patch, match",
    [
        ({"add_embedding_length": 2**31}, "embedding_length' is 2147483648; expected a positive integer below"),
        ({"add_block_count": 10**6}, "num_layers = 1000000 cannot fit"),
        ({"add_vocab_size": 2**30}, r"tensor 'embed.weight' has shape \(262, 32\), the model expects"),
        ({"add_bos_token_id": 10**6}, "bos_token_id' is 1000000, past the 262 tokens"),
    ],
)
def test_gguf_huge_numbers_are_refused_before_allocating(tiny, tmp_path, monkeypatch, patch, match):
    """A size in the metadata far beyond the tensors: refused before the model is built (was an
    allocation of terabytes, or ten minutes building a million layers)."""
    model, tok = tiny
    path = _export(model, tok, tmp_path / "m.gguf", monkeypatch, **patch)
    assert len(path.read_bytes()) < 100_000
    error_of(lambda: attentive.from_pretrained(path), path, match)


def test_gguf_with_mixed_block_types_in_one_projection_group(tiny, tmp_path, monkeypatch):
    """q in Q4_0 blocks, k and v in Q8_0 (llama.cpp's mixed quantisations do this): loads and
    decodes, q/k/v left unjoined (was 'cannot join int4 ... and int8' from optimize)."""
    from gguf.quants import dequantize, quantize

    original = gguf.GGUFWriter.add_tensor
    Q = gguf.GGMLQuantizationType

    def add_tensor(self, name, tensor, *args, raw_dtype=None, **kwargs):
        if name == "blk.0.attn_q.weight" and raw_dtype == Q.Q8_0:
            tensor, raw_dtype = quantize(dequantize(tensor, Q.Q8_0), Q.Q4_0), Q.Q4_0
        return original(self, name, tensor, *args, raw_dtype=raw_dtype, **kwargs)

    model, tok = tiny
    monkeypatch.setattr(gguf.GGUFWriter, "add_tensor", add_tensor)
    path = _export(model, tok, tmp_path / "mixed.gguf", monkeypatch)
    kinds = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert (kinds["blk.0.attn_q.weight"], kinds["blk.0.attn_k.weight"]) == ("Q4_0", "Q8_0")
    lm = attentive.from_pretrained(path)
    plain = attentive.from_pretrained(path, optimize=False)
    ids = torch.tensor([tok.encode("a dog runs")])
    with torch.no_grad():
        fast, ref = lm.model(ids), plain.model(ids)
    assert (fast - ref).abs().max() <= 0.1 * ref.abs().max()


def _config(folder: Path, **changes) -> Path:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"d_ff": True}, r"d_ff must be an integer below 2\*\*63, got True"),  # was TypeError in torch.empty
        ({"num_layers": [1]}, "num_layers must be"),  # was TypeError in nn/stack.py
        ({"bias": 0}, "bias must be bool"),  # was loaded as bias=False
        ({"dropout": [0.1]}, "dropout must be a finite number"),  # was TypeError in torch's Dropout
        ({"rope_base": {}}, "rope_base must be a finite number"),  # was TypeError in rope_scaling.py
        ({"head_dim": 1001}, "rotary dimension must be even"),  # was right type, but the file not named
        ({"vocab_size": 2**31}, r"tensor 'embed.weight' has shape \(262, 32\)"),  # was 256 GiB allocated
        ({"num_layers": 10**9}, "num_layers = 1000000000 cannot fit"),  # was a hang building layers
        ({"d_model": 2**62, "head_dim": 16}, "has shape|does not build"),  # was RuntimeError/overflow in torch
        ({"positional": "sinusoidal", "max_len": 10**8}, "MiB beyond the file's"),  # was a 24 GiB table
        ({"model_type": ["decoder-lm"]}, "unknown model_type"),  # was TypeError: unhashable list
    ],
)
def test_checkpoint_config_values_that_do_not_fit(seeds, tmp_path, changes, match):
    folder = _config(copy_folder(seeds / "checkpoint", tmp_path / "ckpt"), **changes)
    message = error_of(lambda: attentive.load(folder), folder, match)
    assert isinstance(pytest.raises(CheckpointError, attentive.load, folder).value, CheckpointError), message


@pytest.mark.parametrize("text", ["[" * 100_000, "[1, 2]", '"a string"', "\xff\xfe{}"])
def test_checkpoint_config_json_not_an_object(seeds, tmp_path, text):
    """Was RecursionError (deep nesting) or AttributeError (a list, a string)."""
    folder = copy_folder(seeds / "checkpoint", tmp_path / "ckpt")
    (folder / "config.json").write_bytes(text.encode("latin-1"))
    error_of(lambda: attentive.load(folder), folder, "not valid JSON|expected a JSON object")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"model_type": ["llama"]}, "model_type|supported"),  # was TypeError: unhashable list
        ({"rope_parameters": 3}, "config.json.*TypeError"),  # was TypeError: 'int' object is not iterable
        ({"rms_norm_eps": [1e-5]}, "config.json.*TypeError"),  # was TypeError: float() of a list
        ({"max_position_embeddings": 0}, r"config.json: DecoderLMConfig.max_len must be positive"),  # file unnamed
        ({"attention_bias": True}, "config.json: LLaMA with attention_bias"),  # file unnamed
        ({"vocab_size": 2**31}, r"has shape \(262, 32\), the model expects"),  # was 256 GiB allocated
    ],
)
def test_hf_config_values_that_do_not_fit(seeds, tmp_path, changes, match):
    folder = _config(copy_folder(seeds / "hf", tmp_path / "hf"), **changes)
    error_of(lambda: attentive.from_pretrained(folder), folder, match)


def test_hf_config_json_not_an_object(seeds, tmp_path):
    folder = copy_folder(seeds / "hf", tmp_path / "hf")
    (folder / "config.json").write_text("[1, 2]")
    error_of(lambda: attentive.from_pretrained(folder), folder, "expected a JSON object, found list")


def _ct2(folder: Path, drop: str | None = None, **variables) -> Path:
    spec = fz.tiny_whisper_ct2()
    if drop:
        del spec["variables"][drop]
    spec["variables"].update(variables)
    return fz.write_ct2(folder / "model.bin", spec)


def test_ct2_missing_or_odd_variables_name_the_file(tmp_path):
    """Was KeyError for a missing fused bias, RuntimeError for a flag of several values, and
    messages that did not say which file."""
    import numpy as np

    path = _ct2(tmp_path, drop="decoder/layer_0/attention/linear_1/bias")
    error_of(lambda: whisper_ct2_to_hf(read_ct2_model(path)), path, "do not make a Whisper model.*KeyError")
    path = _ct2(tmp_path, drop="decoder/layer_0/self_attention/linear_1/bias")
    error_of(lambda: whisper_ct2_to_hf(read_ct2_model(path)), path, "lacks 'decoder/layer_0/self_attention")
    path = _ct2(tmp_path, **{"decoder/activation": np.array([3, 3], dtype=np.int8)})
    error_of(lambda: whisper_ct2_to_hf(read_ct2_model(path)), path, "'decoder/activation' should be one integer")
    path = _ct2(tmp_path, **{"decoder/activation": np.array(-1, dtype=np.int8)})
    error_of(
        lambda: whisper_ct2_to_hf(read_ct2_model(path)), path, "activation id -1 is not supported; supported: 0 relu"
    )


def test_ct2_shape_with_a_zero_and_huge_dimensions(tmp_path):
    """Was RuntimeError 'Stride calculation overflowed' from torch: (0, 2**32-1, 2**32-1) holds
    zero bytes, as the header says, but no tensor can have that shape."""
    spec = fz.tiny_whisper_ct2()
    data = fz.write_ct2(tmp_path / "model.bin", spec).read_bytes()
    name = b"encoder/conv1/bias\0"
    at = data.index(name) + len(name)  # rank (u8), then the one dimension (u32)
    assert data[at] == 1
    huge = bytes([3]) + struct.pack("<3I", 0, 2**32 - 1, 2**32 - 1)
    rest = data[at + 5 :]  # dtype (u8), byte count (u32), data
    rest = rest[:1] + struct.pack("<I", 0) + rest[5 + struct.unpack_from("<I", rest, 1)[0] :]
    path = write(tmp_path, "model.bin", data[:at] + huge + rest)
    error_of(lambda: read_ct2_model(path), path, "too large for any tensor")


def test_ct2_folder_json_files_that_are_not_json(tmp_path):
    """config.json / vocabulary.json beside model.bin: was json.JSONDecodeError text without the file."""
    _ct2(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    error_of(lambda: read_ct2_folder(tmp_path), tmp_path / "config.json", "not valid JSON")
    (tmp_path / "config.json").unlink()
    (tmp_path / "vocabulary.txt").write_bytes(b"\xff\xfe\x00")
    error_of(lambda: read_ct2_folder(tmp_path), tmp_path / "vocabulary.txt", "not UTF-8")


def test_seeds_load(seeds):
    """The corpora start from files that load: the mutations, not the seeds, make the errors."""
    for name in ("f32.gguf", "q8_0.gguf", "hf"):
        assert outcome(lambda n=name: attentive.from_pretrained(seeds / n), seeds / name) == "load"
    assert outcome(lambda: attentive.load(seeds / "checkpoint"), seeds / "checkpoint") == "load"
    config, state = whisper_ct2_to_hf(read_ct2_model(seeds / "ct2" / "model.bin"))
    assert config["d_model"] == 8 and state["proj_out.weight"] is state["model.decoder.embed_tokens.weight"]
