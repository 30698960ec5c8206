"""Small shapes datasets shared by the data tests (written once per test session)."""
from __future__ import annotations

import pytest

from ddetr_edu.data import ShapesConfig, make_shapes_dataset

TINY = ShapesConfig(seed=3, num_train=4, num_val=12)


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """4 train and 12 val images of the default 256 px recipe."""
    return make_shapes_dataset(tmp_path_factory.mktemp("tiny_shapes"), TINY)


@pytest.fixture(scope="session")
def default_val_shapes(tmp_path_factory):
    """The default configuration's val split (150 images), without its train split."""
    return make_shapes_dataset(tmp_path_factory.mktemp("default_val"), ShapesConfig(num_train=0), num_workers=2)
