"""Shared fixtures: small real data (scikit-learn's bundled UCI optdigits)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ads.pool import write_pool


@pytest.fixture(scope="session")
def digits():
    d = load_digits()
    images = np.clip(d.images * 16, 0, 255).astype(np.uint8)  # 8x8, values 0..16 -> 0..256
    return images, d.data.astype(np.float32), d.target.astype(np.int64)


def _split(n, seed=0):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    return perm[:200], perm[200:350], perm[350:950]


def _write_split(tmp_path, x, y, prefix=""):
    """labeled (200) / val (150) / pool (600, hidden labels) stores of the same split."""
    lab, val, pool = _split(len(y))
    kw = {"classes": [str(c) for c in range(10)]}
    return {
        "labeled": write_pool(tmp_path / f"{prefix}labeled.zarr", x[lab], ids=[f"d{i}" for i in lab], y=y[lab], **kw),
        "val": write_pool(tmp_path / f"{prefix}val.zarr", x[val], ids=[f"d{i}" for i in val], y=y[val], **kw),
        "pool": write_pool(tmp_path / f"{prefix}pool.zarr", x[pool], ids=[f"d{i}" for i in pool],
                           y=np.full(len(pool), -1), hidden={"y": y[pool]}, **kw),
    }


@pytest.fixture()
def feature_stores(tmp_path, digits):
    """labeled (200) / val (150) / pool (600) features stores of optdigits."""
    _, feats, y = digits
    return _write_split(tmp_path, feats, y)


@pytest.fixture()
def image_stores(tmp_path, digits):
    """The same split as uint8 8x8 image stores."""
    images, _, y = digits
    return _write_split(tmp_path, images, y, prefix="i")
