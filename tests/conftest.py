from pathlib import Path

import pytest

from pairs import build_pair


@pytest.fixture(scope="session")
def pair_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pairs")


@pytest.fixture(scope="session")
def llama_pair(pair_root):
    return build_pair(pair_root, "llama")


@pytest.fixture(scope="session")
def gpt2_pair(pair_root):
    return build_pair(pair_root, "gpt2")


@pytest.fixture(scope="session")
def vocab_pair(pair_root):
    return build_pair(pair_root, "vocab")


@pytest.fixture(scope="session")
def gap_pair(pair_root):
    return build_pair(pair_root, "gap")


@pytest.fixture(scope="session")
def mistral_pair(pair_root):
    return build_pair(pair_root, "mistral")


@pytest.fixture(scope="session")
def gemma2_pair(pair_root):
    return build_pair(pair_root, "gemma2")


@pytest.fixture(scope="session")
def gemma3_pair(pair_root):
    return build_pair(pair_root, "gemma3")


@pytest.fixture(scope="session")
def olmo2_pair(pair_root):
    return build_pair(pair_root, "olmo2")


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
