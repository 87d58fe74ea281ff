"""The CPU kernels of ``csrc/panel_linear.cpp``, compiled on first use, with a clean way out.

``panel_ops()`` returns the ``torch.ops.attentive_cpu`` namespace (``linear_f32``, ``linear_i8``,
``linear_u4``, and with int8 activations ``linear_i8_act8``, ``linear_u4_act8``: see the C++
file for the layouts) or None when they cannot be had: no C++
compiler or ninja, a build error, a CPU without AVX2, or ``ATTENTIVE_KERNELS=0`` in the
environment. Callers then take their reference path (dequantise + ``F.linear``), which computes
the same product; ``kernel_status()`` says which it is and why.

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

SOURCE = Path(__file__).parent / "csrc" / "panel_linear.cpp"
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

        source = SOURCE.read_text(encoding="utf-8")
        digest = hashlib.sha1((source + " ".join(FLAGS) + torch.__version__).encode()).hexdigest()[:12]
        cpp_extension.load(name=f"attentive_cpu_{digest}", sources=[str(SOURCE)], extra_cflags=FLAGS,
                           extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
    except Exception as err:  # no compiler, no ninja, a build error: the reference path still works
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return None, f"the kernels did not build ({type(err).__name__}: {first[:200]})"
    _register_fakes()
    return torch.ops.attentive_cpu, f"built for {capability}"


def _register_fakes() -> None:
    """Shapes for tracing (torch.compile): every op maps x (M, K) to (M, n_out)."""

    def fake(x, *args):
        return x.new_empty((x.shape[0], args[-1]))

    for name in ("linear_f32", "linear_i8", "linear_u4", "linear_i8_act8", "linear_u4_act8"):
        qualified = f"attentive_cpu::{name}"
        try:
            torch.library.register_fake(qualified)(fake)
        except RuntimeError:  # registered already (a second load of the same library)
            pass


def panel_ops():
    """The ``torch.ops.attentive_cpu`` namespace, or None (reason: ``kernel_status()``)."""
    if "ops" not in _state:
        with _lock:
            if "ops" not in _state:
                _state["ops"], _state["why"] = _build()
    return _state["ops"]


def has_int8_activations() -> bool:
    """Whether the int8-activation kernels run here (AVX512-VNNI)."""
    ops = panel_ops()
    return ops is not None and bool(ops.has_act8())


def kernel_status() -> str:
    """One line: whether the CPU kernels are in use, and why not."""
    ops = panel_ops()
    return f"panel kernels: {_state['why']}" if ops is not None else f"reference path: {_state['why']}"
