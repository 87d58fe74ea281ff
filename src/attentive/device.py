"""Which device to run on, decided in one place.

Every command, the trainer and ``torchrun`` workers turn a device name into a ``torch.device``
through ``resolve_device``, so ``cuda:1`` on a machine with one GPU (or none) fails the same
way everywhere, with a one-line message, instead of silently running somewhere else.
``cpu_has_native_bf16`` is the one probe for CPUs that multiply bf16 in hardware, where bf16
autocast trains faster than fp32.
"""

from __future__ import annotations

from pathlib import Path

import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def check_device_name(name: str) -> str:
    """The name, lower-cased, if it is one of auto, cpu, cuda, cuda:N; a ValueError otherwise.

    Only the spelling is checked, so a config naming ``cuda`` can be made on a machine without
    one; ``resolve_device`` checks that the device exists when it is used.
    """
    text = str(name).strip().lower()
    head, sep, index = text.partition(":")
    if text in ("auto", "cpu", "cuda") or (head == "cuda" and sep and index.isdigit()):
        return text
    raise ValueError(f"device {name!r} is not one of {DEVICE_CHOICES}")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N`` -> a device that exists.

    Raises ValueError naming the device and what this machine has when it cannot be used.
    """
    name = check_device_name(str(name))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(f"device {name!r} was asked for, but this machine has no CUDA device")
    index = name.partition(":")[2]
    if not index:
        return torch.device("cuda")
    if int(index) >= count:
        raise ValueError(
            f"device {name!r} was asked for, but this machine has {count} CUDA device(s) (cuda:0 .. cuda:{count - 1})"
        )
    return torch.device("cuda", int(index))


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX).

    oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) also says yes on plain
    AVX-512, where bf16 is emulated and slower than fp32, so it is not used.
    """
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None for probe in probes):
        return any(bool(probe()) for probe in probes if probe is not None)
    try:  # older torch: read the flags the kernel reports
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
