import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tok():
    import tiny

    return tiny.tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """tiny_model_dir(family, num_layers=4) -> a saved tiny random model directory, built once per session."""
    import tiny

    made = {}

    def make(family: str, num_layers: int = 4):
        key = (family, num_layers)
        if key not in made:
            made[key] = tiny.save(tmp_path_factory.mktemp("models") / f"tiny-{family}-{num_layers}", family, num_layers)
        return made[key]

    return make
