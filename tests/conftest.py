"""Fixtures shared across test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Micro models run fastest (and identically in and out of process) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The training tests' corpus (posts, tokenizer, shards), built once and only read: (shards, tokenizer).
    Modules that need another corpus define their own ``corpus`` fixture."""
    from train_helpers import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"))
