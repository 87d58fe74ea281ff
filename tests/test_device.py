"""Device names: one resolver for every command, the trainer and torchrun workers."""

from __future__ import annotations

import pytest
import torch

from attentive.device import check_device_name, cpu_has_native_bf16, resolve_device


def test_names_resolve_to_devices_that_exist():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cuda:", "mps0", ""])
def test_a_misspelled_device_names_the_choices(name):
    with pytest.raises(ValueError, match="not one of auto, cpu, cuda or cuda:N"):
        check_device_name(name)


def test_a_gpu_index_past_the_last_one_is_an_error():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=f"cuda:{count}"):
        resolve_device(f"cuda:{count}")
    if count == 0:
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_the_bf16_probe_agrees_with_the_cpu_flags():
    """The one probe reports native bf16 exactly when the kernel lists avx512_bf16 or amx_bf16."""
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo to compare with")
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)
