"""Shared fixtures of the test suite."""

import pytest
import torch

from speechbrain_cavmae.data.toy import generate_toy_dataset


@pytest.fixture
def one_thread():
    """Tiny models run much faster with one thread on a small shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """The toy data set of the recipe tests: 4 classes, 64 / 32 / 32 clips, 64 px frames."""
    root = tmp_path_factory.mktemp("toy")
    return generate_toy_dataset(root, n_train=64, n_valid=32, n_test=32, seed=0,
                                image_size=64, n_classes=4)
