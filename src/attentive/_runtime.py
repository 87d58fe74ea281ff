"""What must be set before PyTorch's runtime starts: OpenMP's wait policy, and where compiled
steps are kept.

PyTorch's CPU threads are OpenMP threads. By default they spin for a while after every parallel
region, waiting for the next; on a machine whose cores other processes use too (a laptop, a
shared server), the spinning threads take the cores those processes and attentive's own Python
need, and a decoding step or a training step takes several times longer (a Tiny Shakespeare
step: 554 ms spinning against 67 ms passive, on 2 shared cores). attentive's CPU kernels are
written for passive threads: a product too small to pay for waking the second thread runs on
the caller's. So ``import attentive`` sets ``OMP_WAIT_POLICY=PASSIVE`` when

* nobody has set ``OMP_WAIT_POLICY`` (a value the user gives is kept), and
* PyTorch is not loaded yet (OpenMP reads the variable once, when it starts; afterwards setting
  it changes nothing, and ``runtime_note()`` says so).

The command line imports attentive before torch, so it always decodes this way. A program that
imports torch first and wants the same sets the variable in its environment, or imports
attentive first.

Compiled decoding steps (``torch.compile``'s inductor) are cached on disk, so a second start
finds their code (a server's start: 67 s cold, 30 s warm on 2 cores); inductor keeps them in the system's temporary folder, which a reboot empties, so
unless ``TORCHINDUCTOR_CACHE_DIR`` is set they go to ``~/.cache/attentive/inductor``.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"


def prepare() -> None:
    """Passive OpenMP threads unless the user chose, and only while the runtime can still see it."""
    if WAIT_POLICY not in os.environ and "torch" not in sys.modules:
        os.environ[WAIT_POLICY] = "PASSIVE"
        os.environ["ATTENTIVE_SET_OMP_WAIT_POLICY"] = "1"  # who set it (runtime_note)
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache, "attentive", "inductor")


def warn_if_spinning() -> None:
    """Once per process: a warning when torch loaded before attentive and nobody chose a wait
    policy, so OpenMP's threads spin (CPU decoding several times slower on a busy machine)."""
    global _warned
    if _warned or WAIT_POLICY in os.environ:
        return
    _warned = True
    import warnings

    warnings.warn(
        "torch was imported before attentive with OMP_WAIT_POLICY unset, so OpenMP's threads spin "
        "between products: CPU decoding can be several times slower. Import attentive first, or "
        "set OMP_WAIT_POLICY=PASSIVE before Python starts",
        stacklevel=3,
    )


_warned = False


def runtime_note() -> str:
    """One line on the wait policy in effect and who chose it (benchmarks and ``attentive models``)."""
    value = os.environ.get(WAIT_POLICY)
    if value is None:
        return "OMP_WAIT_POLICY unset (torch was imported before attentive): OpenMP threads spin"
    who = "set by attentive" if os.environ.get("ATTENTIVE_SET_OMP_WAIT_POLICY") else "from the environment"
    return f"OMP_WAIT_POLICY={value} ({who})"
