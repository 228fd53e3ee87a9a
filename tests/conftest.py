"""Shared test fixtures: the reference images of the measures issue and a PNG validity check."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data, filters, img_as_float

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # plain `pytest` from the repo


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU, skipped without one; "
                            "`pytest -m cuda tests` is a GPU lease's first contact (paper/lease.py)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


def chw(a):
    a = a.transpose(2, 0, 1) if a.ndim == 3 else a[None]
    return torch.from_numpy(np.ascontiguousarray(a)).float()


@pytest.fixture(scope="session")
def imgs():
    """astronaut, its σ=25 noisy copy (RandomState(0)), its Gaussian σ=2 blur, and camera."""
    a = img_as_float(data.astronaut())
    noisy = np.clip(a + np.random.RandomState(0).normal(0, 25 / 255, a.shape), 0, 1)
    blur2 = filters.gaussian(a, sigma=2, channel_axis=-1)
    return {"astronaut": chw(a), "noisy": chw(noisy), "blur2": chw(blur2),
            "camera": chw(img_as_float(data.camera()))}


def is_png(path):
    with Image.open(path) as im:
        im.verify()
    return Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
