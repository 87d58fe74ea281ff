"""The CPU kernels of ``csrc/``, compiled on first use, with a clean way out.

``panel_ops()`` returns the ``torch.ops.attentive_cpu`` namespace or None when the kernels
cannot be had: no C++ compiler or ninja, a build error, a CPU without AVX2, or
``ATTENTIVE_KERNELS=0`` in the environment. It holds

* ``panel_linear.cpp``: ``linear_f32``, ``linear_i8``, ``linear_u4``, and with int8 activations
  ``linear_i8_act8``, ``linear_u4_act8`` (see the C++ file for the layouts);
* ``one_query_attention.cpp``: ``attend_one``, attention for one query per row;
* ``activations.cpp``: ``gelu_erf``, GELU for a decoding step's few rows.

Callers then take their reference path (dequantise + ``F.linear``; matmul + softmax + matmul),
which computes the same product; ``kernel_status()`` says which it is and why.

``gemm()`` is the product for many rows (an encoder's 1,500 positions, a long prompt): oneDNN's
fp32 GEMM through PyTorch's own ``mkldnn._linear_pointwise`` op, where PyTorch has it, else
``F.linear``.

The library is built by ``torch.utils.cpp_extension.load`` with ``-O3 -march=native -fopenmp``
into PyTorch's extension folder (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``),
under a name holding a hash of the source, so an edited kernel is rebuilt and a cached one is
loaded in milliseconds (the first build takes about 30 s on 2 cores). Each op has a fake
(shape-only) implementation, so ``torch.compile`` traces through it without a graph break.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import torch

CSRC = Path(__file__).parent / "csrc"
SOURCES = [CSRC / "panel_linear.cpp", CSRC / "one_query_attention.cpp", CSRC / "activations.cpp"]
HEADERS = [CSRC / "cpu_common.h"]
FLAGS = ["-O3", "-march=native", "-fopenmp"]
NP = 32  # output columns per panel (the C++ file's NP)

_lock = threading.Lock()
_state: dict[str, object] = {}  # "ops" (namespace or None), "why" (reason when None)


def _build():
    if os.environ.get("ATTENTIVE_KERNELS", "1") == "0":
        return None, "disabled by ATTENTIVE_KERNELS=0"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return None, f"the CPU lacks AVX2 (PyTorch reports {capability})"
    try:
        from torch.utils import cpp_extension

        source = "".join(path.read_text(encoding="utf-8") for path in SOURCES + HEADERS)
        digest = hashlib.sha1((source + " ".join(FLAGS) + torch.__version__).encode()).hexdigest()[:12]
        cpp_extension.load(
            name=f"attentive_cpu_{digest}",
            sources=[str(p) for p in SOURCES],
            extra_cflags=FLAGS,
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )
    except Exception as err:  # no compiler, no ninja, a build error: the reference path still works
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return None, f"the kernels did not build ({type(err).__name__}: {first[:200]})"
    _register_fakes()
    return torch.ops.attentive_cpu, f"built for {capability}"


def _register_fakes() -> None:
    """Shapes for tracing (torch.compile): the linear ops map x (M, K) to (M, n_out);
    ``attend_one`` gives q's shape (B, H, 1, Dh), ``gelu_erf`` x's, both contiguous."""

    def fake_linear(x, *args):
        return x.new_empty((x.shape[0], args[-1]))

    def fake_attend(q, *args):
        return q.new_empty(q.shape)

    fakes = {name: fake_linear for name in ("linear_f32", "linear_i8", "linear_u4", "linear_i8_act8", "linear_u4_act8")}
    fakes["attend_one"] = fake_attend
    fakes["gelu_erf"] = lambda x: x.new_empty(x.shape)
    for name, fake in fakes.items():
        try:
            torch.library.register_fake(f"attentive_cpu::{name}")(fake)
        except RuntimeError:  # registered already (a second load of the same library)
            pass


def panel_ops():
    """The ``torch.ops.attentive_cpu`` namespace, or None (reason: ``kernel_status()``)."""
    if "ops" not in _state:
        with _lock:
            if "ops" not in _state:
                _state["ops"], _state["why"] = _build()
    return _state["ops"]


def loaded_ops():
    """The namespace if ``panel_ops()`` has built or loaded it in this process, else None, without
    building: a plain model's decoding should not wait for a compiler; ``optimize()`` loads it.
    None while ``torch.export`` traces (an ONNX export): other runtimes have no such ops."""
    exporting = getattr(torch.compiler, "is_exporting", None)
    if exporting is not None and exporting():
        return None
    return _state.get("ops")


def _onednn_linear():
    """PyTorch's oneDNN linear op (the one inductor's CPU code calls), or None where this build
    lacks it; looked up once."""
    if "onednn" not in _state:
        op = None
        if torch.backends.mkldnn.is_available() and os.environ.get("ATTENTIVE_ONEDNN", "1") != "0":
            op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
        _state["onednn"] = op
    return _state["onednn"]


def gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for inference on CPU, in oneDNN's fp32 GEMM where it can run.

    Why: PyTorch's fp32 ``F.linear`` on CPU calls MKL, which takes its AVX2 code on AMD CPUs;
    oneDNN uses AVX-512 there. Measured on 2 AMD EPYC cores, 1,500 x 384 by 384 x 1,536 (a
    Whisper tiny encoder's FFN): F.linear 8.5 ms (~200 GFLOP/s), oneDNN 3.8 ms (~470 GFLOP/s,
    the same fp32 arithmetic: errors against float64 of the same size). For one row oneDNN is
    slower (a call costs ~60 us), so this is for many rows; callers choose. Gradients, other
    dtypes and devices, or ``ATTENTIVE_ONEDNN=0`` take ``F.linear``."""
    op = _onednn_linear()
    if (
        op is None
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or weight.dtype != torch.float32
        or torch.is_grad_enabled()
        or x.numel() == 0
    ):
        return torch.nn.functional.linear(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1])  # (M, K)
    y = op(rows, weight, bias, "none", [], "")  # (M, N)
    return y.reshape(*x.shape[:-1], weight.shape[0])


GELU_KERNEL_MAX = 1 << 14  # values; above this PyTorch's GELU, on all threads, is worth waking them for


def gelu(x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(x)`` (the erf form); a decoding step's few values in ``gelu_erf`` on the caller's
    thread once the kernels are loaded (PyTorch's wakes every thread for them)."""
    ops = loaded_ops()
    if (
        ops is None
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or x.numel() > GELU_KERNEL_MAX
        or torch.is_grad_enabled()
    ):
        return torch.nn.functional.gelu(x)
    return ops.gelu_erf(x)


def has_int8_activations() -> bool:
    """Whether the int8-activation kernels run here (AVX512-VNNI)."""
    ops = panel_ops()
    return ops is not None and bool(ops.has_act8())


def kernel_status() -> str:
    """One line: whether the CPU kernels are in use, and why not."""
    ops = panel_ops()
    return f"panel kernels: {_state['why']}" if ops is not None else f"reference path: {_state['why']}"
