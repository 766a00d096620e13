"""Test set-up: Triton's interpreter without CUDA, a fixed torch seed per test. Helpers live in tests/helpers."""

import os

import pytest
import torch

# Without CUDA, Triton kernels run in its interpreter; triton reads this when it is first imported (by anything).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
