"""Shared fixtures for the tests: seeding and thread count. Helpers live in ``helpers.py``."""

from __future__ import annotations

import pytest
import torch


# The tests run tiny tensors on a few shared cores: one intra-op thread avoids oversubscription,
# which otherwise makes small-op tests 10x slower when the machine is busy.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
