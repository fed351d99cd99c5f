"""Fixtures shared across test modules."""

import pytest
import torch

# The files that take longest run first: `make test` hands whole files to two workers
# (pytest-xdist, --dist loadfile --no-loadscope-reorder) in collection order, and a long file
# collected late (the demo) would run alone at the end while the other worker sits idle. The list
# only orders: a file missing from it runs in its usual place, a name no longer there does nothing.
LONGEST_FIRST = ("test_demo.py", "test_ray_engine.py", "test_ads_server.py", "test_search.py",
                 "test_distributed_train.py", "test_pipeline_train.py", "test_clean_vectorised.py",
                 "test_embed.py", "test_trends.py", "test_distributed_sft.py", "test_parallel.py",
                 "test_install.py", "test_drafts.py", "test_pipeline.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


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
