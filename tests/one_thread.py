"""An autouse fixture for modules of many tiny tensor operations: on a shared 2-core machine one
torch thread is about 100 times faster than two for them. Import it into a test module to use it."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
