"""Shared fixtures of the test suite."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models run much faster with one thread on a small shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
