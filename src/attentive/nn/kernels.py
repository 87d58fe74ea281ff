"""The CPU kernels of ``csrc/``, compiled on first use, with a clean way out.

``panel_ops()`` returns the ``torch.ops.attentive_cpu`` namespace or None when the kernels
cannot be had: no C++ compiler or ninja, a build error, a CPU without AVX2, or
``ATTENTIVE_KERNELS=0`` in the environment. It holds

* ``panel_linear.cpp``: ``linear_f32``, ``linear_i8``, ``linear_u4``, and with int8 activations
  ``linear_i8_act8``, ``linear_u4_act8`` (see the C++ file for the layouts);
* ``one_query_attention.cpp``: ``attend_one``, attention for one query per row.

Callers then take their reference path (dequantise + ``F.linear``; matmul + softmax + matmul),
which computes the same product; ``kernel_status()`` says which it is and why.

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
SOURCES = [CSRC / "panel_linear.cpp", CSRC / "one_query_attention.cpp"]
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
        cpp_extension.load(name=f"attentive_cpu_{digest}", sources=[str(p) for p in SOURCES], extra_cflags=FLAGS,
                           extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
    except Exception as err:  # no compiler, no ninja, a build error: the reference path still works
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return None, f"the kernels did not build ({type(err).__name__}: {first[:200]})"
    _register_fakes()
    return torch.ops.attentive_cpu, f"built for {capability}"


def _register_fakes() -> None:
    """Shapes for tracing (torch.compile): the linear ops map x (M, K) to (M, n_out);
    ``attend_one`` gives q's shape (B, H, 1, Dh), contiguous."""

    def fake_linear(x, *args):
        return x.new_empty((x.shape[0], args[-1]))

    def fake_attend(q, *args):
        return q.new_empty(q.shape)

    fakes = {name: fake_linear for name in ("linear_f32", "linear_i8", "linear_u4", "linear_i8_act8", "linear_u4_act8")}
    fakes["attend_one"] = fake_attend
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
    building: a plain model's decoding should not wait for a compiler; ``optimize()`` loads it."""
    return _state.get("ops")


def has_int8_activations() -> bool:
    """Whether the int8-activation kernels run here (AVX512-VNNI)."""
    ops = panel_ops()
    return ops is not None and bool(ops.has_act8())


def kernel_status() -> str:
    """One line: whether the CPU kernels are in use, and why not."""
    ops = panel_ops()
    return f"panel kernels: {_state['why']}" if ops is not None else f"reference path: {_state['why']}"
