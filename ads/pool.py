"""Pool stores: zarr v3 groups holding images or features, ids and optional labels.

Schema (version 1)
------------------
Group attributes:
    ``ads_schema`` (int, 1), ``kind`` ("images" | "features"), ``classes`` (list of str).
Arrays:
    ``x``    uint8 (N, H, W, C) for images, float32 (N, D) for features;
    ``ids``  (N,) unique strings;
    ``y``    optional (N,) int64 labels, -1 = unlabeled.
Hidden subgroup ``hidden`` (simulation only; ``ads select`` never reads it):
    ``y``      (N,) int64 true labels;
    ``source`` optional (N,) strings, where each item came from (clean, noisy, ...).

Stores are written to a temporary sibling directory and renamed into place, so a failed
write never leaves a half-written store behind.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ads._io import atomic_dir, atomic_write_text, replace_dir  # noqa: F401 (re-exported)
from ads.errors import DataError, StoreError

SCHEMA_VERSION = 1
KINDS = ("images", "features")
_CHUNK_BYTES = 4 * 2**20


@dataclass
class Pool:
    """An opened, validated pool store. Arrays are read lazily, block by block."""

    path: Path
    kind: str
    classes: list[str]
    n: int
    item_shape: tuple
    _group: object

    @property
    def x(self):
        """The zarr array ``x`` (lazy)."""
        return self._group["x"]

    @property
    def has_labels(self) -> bool:
        return "y" in self._group

    @property
    def has_hidden(self) -> bool:
        return "hidden" in self._group

    def ids(self) -> np.ndarray:
        return _strings(self._group["ids"][:])

    def y(self) -> np.ndarray | None:
        """Labels (int64, -1 = unlabeled) or None when the store has no ``y``."""
        if not self.has_labels:
            return None
        return np.asarray(self._group["y"][:], dtype=np.int64)

    def hidden(self, name: str = "y") -> np.ndarray | None:
        """Hidden simulation array (true labels, source tags) or None."""
        if not self.has_hidden or name not in self._group["hidden"]:
            return None
        a = self._group["hidden"][name][:]
        return np.asarray(a, dtype=np.int64) if name == "y" else _strings(a)

    @property
    def chunk_rows(self) -> int:
        return int(self.x.chunks[0])

    def blocks(self, rows: int | None = None):
        """Yield ``(start, x_block)`` over the store, ``rows`` at a time (chunk-aligned)."""
        rows = rows or self.chunk_rows
        for s in range(0, self.n, rows):
            yield s, np.asarray(self.x[s : s + rows])

    def read_x(self) -> np.ndarray:
        return np.asarray(self.x[:])

    def fingerprint(self) -> str:
        """Hash of the store's files (names, sizes, modification times)."""
        h = hashlib.sha256(str(self.path.resolve()).encode())
        for root, _dirs, files in sorted(os.walk(self.path)):
            for f in sorted(files):
                p = Path(root, f)
                st = p.stat()
                h.update(f"{p.relative_to(self.path)}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        y = self.y()
        info = {
            "path": str(self.path),
            "kind": self.kind,
            "n": self.n,
            "shape": [self.n, *self.item_shape],
            "dtype": str(self.x.dtype),
            "classes": self.classes,
            "labeled": int((y >= 0).sum()) if y is not None else 0,
            "chunk_rows": self.chunk_rows,
            "hidden": sorted(self._group["hidden"].array_keys()) if self.has_hidden else [],
        }
        if y is not None:
            counts = np.bincount(y[y >= 0], minlength=len(self.classes))
            info["per_class"] = {c: int(n) for c, n in zip(self.classes, counts)}
        return info


def _strings(a) -> np.ndarray:
    """A zarr string array (numpy StringDType) as a fixed-width unicode array."""
    a = np.asarray(a)
    return a if a.dtype.kind == "U" else np.array(a.tolist(), dtype=str)


def as_pool(store, role: str = "store") -> Pool:
    """``store`` if it is an opened :class:`Pool`, else ``open_pool(store, role=role)``."""
    return store if isinstance(store, Pool) else open_pool(store, role=role)


def open_pool(path, *, role: str = "store", validate: bool = True) -> Pool:
    """Open and validate a pool store.

    Parameters
    ----------
    path : str or Path
        The zarr v3 group directory.
    role : str
        Used in messages ("pool", "labeled", ...), e.g. "labeled store 'l.zarr': ...".
    validate : bool
        Check every rule of the schema, including a streamed scan of ``x`` for NaN/inf
        in features stores.
    """
    import zarr

    path = Path(path)
    where = f"{role} {str(path)!r}"
    if not path.exists():
        raise StoreError(f"{where} does not exist.")
    if not path.is_dir():
        raise StoreError(f"{where} is not a directory (a zarr v3 group was expected).")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as e:  # zarr raises several types for a non-group path
        raise StoreError(f"{where} is not a zarr v3 group ({type(e).__name__}: {e}).") from None
    attrs = dict(group.attrs)
    if "ads_schema" not in attrs:
        raise StoreError(f"{where} is not an ads pool store: attribute 'ads_schema' is missing.")
    if attrs["ads_schema"] != SCHEMA_VERSION:
        raise StoreError(
            f"{where} has schema version {attrs['ads_schema']!r}; this ads reads version {SCHEMA_VERSION}."
        )
    kind = attrs.get("kind")
    if kind not in KINDS:
        raise StoreError(f"{where} has attribute kind={kind!r}; expected one of {list(KINDS)}.")
    classes = attrs.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise StoreError(f"{where} attribute 'classes' must be a list of strings. Got {classes!r}.")
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise StoreError(f"{where} attribute 'classes' names class {dup[0]!r} more than once.")
    for name in ("x", "ids"):
        if name not in group:
            raise StoreError(f"{where} has no array {name!r}.")
    x = group["x"]
    n = int(x.shape[0]) if len(x.shape) else 0
    pool = Pool(path=path, kind=kind, classes=list(classes), n=n, item_shape=tuple(x.shape[1:]), _group=group)
    if validate:
        _validate(pool, group, where)
    return pool


def _validate(pool: Pool, group, where: str) -> None:
    x = group["x"]
    if pool.kind == "images":
        if x.dtype != np.uint8 or len(x.shape) != 4:
            raise StoreError(
                f"{where} array 'x' must be uint8 of shape (N, H, W, C) for images. "
                f"Got {x.dtype} {tuple(x.shape)}."
            )
    else:
        if x.dtype not in (np.float32, np.float64) or len(x.shape) != 2:
            raise StoreError(
                f"{where} array 'x' must be float32 of shape (N, D) for features. "
                f"Got {x.dtype} {tuple(x.shape)}."
            )
    if pool.n == 0:
        raise StoreError(f"{where} array 'x' is empty.")
    ids = group["ids"]
    if tuple(ids.shape) != (pool.n,):
        raise StoreError(f"{where} array 'ids' has shape {tuple(ids.shape)}; 'x' has {pool.n} rows.")
    id_values = pool.ids()
    uniq, counts = np.unique(id_values, return_counts=True)
    if uniq.shape[0] != pool.n:
        dup = uniq[counts > 1][:3]
        raise StoreError(f"{where} array 'ids' has duplicate ids, e.g. {', '.join(repr(str(d)) for d in dup)}.")
    if "y" in group:
        y = group["y"]
        if tuple(y.shape) != (pool.n,):
            raise StoreError(f"{where} array 'y' has shape {tuple(y.shape)}; 'x' has {pool.n} rows.")
        if not np.issubdtype(y.dtype, np.integer):
            raise StoreError(f"{where} array 'y' must hold integers (-1 = unlabeled). Got {y.dtype}.")
        yv = np.asarray(y[:])
        bad = (yv < -1) | (yv >= len(pool.classes))
        if bad.any():
            i = int(np.argmax(bad))
            raise StoreError(
                f"{where} array 'y' has label {int(yv[i])} at row {i}; expected -1 or 0..{len(pool.classes) - 1} "
                f"({len(pool.classes)} classes)."
            )
    if "hidden" in group:
        for name in group["hidden"].array_keys():
            a = group["hidden"][name]
            if tuple(a.shape) != (pool.n,):
                raise StoreError(f"{where} array 'hidden/{name}' has shape {tuple(a.shape)}; 'x' has {pool.n} rows.")
    if pool.kind == "features":
        for s, block in pool.blocks():
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                i = s + int(np.argmin(finite))
                raise StoreError(f"{where} array 'x' has NaN or inf at row {i} (id {str(id_values[i])!r}).")


def infer_kind(x: np.ndarray, what: str) -> str:
    """'features' for 2-D float arrays, 'images' for 3-4-D uint8 arrays."""
    if x.ndim == 2 and np.issubdtype(x.dtype, np.floating):
        return "features"
    if x.ndim in (3, 4) and x.dtype == np.uint8:
        return "images"
    raise DataError(
        f"{what}: 'x' must be float of 2 dims (features) or uint8 of 3-4 dims (images). "
        f"Got {x.dtype} of shape {x.shape}."
    )


def write_pool(
    path,
    x: np.ndarray,
    *,
    ids=None,
    y=None,
    classes=None,
    hidden: dict | None = None,
    attrs: dict | None = None,
    overwrite: bool = False,
    what: str | None = None,
) -> Path:
    """Validate arrays and write a pool store atomically (temp dir, then rename).

    Parameters
    ----------
    x : ndarray
        uint8 (N, H, W) or (N, H, W, C) images, or float (N, D) features.
    ids : array-like of str, optional
        Unique identifiers; default "0".."N-1".
    y : array-like of int, optional
        Labels, -1 = unlabeled.
    classes : list of str, optional
        Class names; default "0".."max(y)" (or from ``hidden['y']``).
    hidden : dict, optional
        Simulation-only arrays, e.g. ``{"y": true_labels, "source": tags}``.
    """
    import zarr

    path = Path(path)
    what = what or f"store {str(path)!r}"
    x = np.asarray(x)
    kind = infer_kind(x, what)
    if kind == "images" and x.ndim == 3:
        x = x[..., None]
    if kind == "features":
        x = np.ascontiguousarray(x, dtype=np.float32)
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            raise DataError(f"{what}: 'x' has NaN or inf at row {int(np.argmin(finite))}.")
    n = x.shape[0]
    if n == 0:
        raise DataError(f"{what}: 'x' is empty.")
    ids = np.arange(n).astype(str) if ids is None else np.asarray(ids).astype(str)
    if ids.shape != (n,):
        raise DataError(f"{what}: 'ids' has shape {ids.shape}; 'x' has {n} rows.")
    if np.unique(ids).shape[0] != n:
        raise DataError(f"{what}: 'ids' are not unique.")
    hidden = dict(hidden or {})
    label_src = None
    if y is not None:
        y = _as_int_labels(y, "y", n, what)
        label_src = y
    if "y" in hidden:
        hidden["y"] = _as_int_labels(hidden["y"], "hidden y", n, what)
        label_src = hidden["y"] if label_src is None else np.concatenate([label_src, hidden["y"]])
    if classes is None:
        top = int(label_src.max()) if label_src is not None and label_src.size else -1
        classes = [str(c) for c in range(top + 1)]
    classes = [str(c) for c in classes]
    if label_src is not None and label_src.size and label_src.max() >= len(classes):
        raise DataError(f"{what}: label {int(label_src.max())} but only {len(classes)} classes.")

    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise DataError(f"{what}: class names must be unique. Got {dup[0]!r} more than once.")
    if path.exists() and not overwrite:
        raise StoreError(f"store {str(path)!r} already exists; choose another path or pass --overwrite.")
    with atomic_dir(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        group.attrs.update({"ads_schema": SCHEMA_VERSION, "kind": kind, "classes": classes, **(attrs or {})})
        row_bytes = max(1, int(np.prod(x.shape[1:])) * x.dtype.itemsize)
        rows = int(max(1, min(n, _CHUNK_BYTES // row_bytes)))
        arr = group.create_array("x", shape=x.shape, dtype=x.dtype, chunks=(rows, *x.shape[1:]))
        arr[:] = x
        _write_1d(group, "ids", ids, rows)
        if y is not None:
            _write_1d(group, "y", y, rows)
        if hidden:
            hg = group.create_group("hidden")
            for name, a in hidden.items():
                a = np.asarray(a)
                if a.shape != (n,):
                    raise DataError(f"{what}: hidden array {name!r} has shape {a.shape}; 'x' has {n} rows.")
                _write_1d(hg, name, a if name == "y" else a.astype(str), rows)
    return path


def _write_1d(group, name, a, rows):
    dtype = str if a.dtype.kind in "UOT" else a.dtype
    arr = group.create_array(name, shape=a.shape, dtype=dtype, chunks=(min(rows * 4, a.shape[0]),))
    arr[:] = a


def _as_int_labels(y, name, n, what):
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"{what}: {name!r} has shape {y.shape}; 'x' has {n} rows.")
    if y.dtype.kind not in "iu":
        raise DataError(f"{what}: {name!r} must hold integer labels. Got {y.dtype}.")
    y = y.astype(np.int64)
    if y.size and y.min() < -1:
        raise DataError(f"{what}: {name!r} has label {int(y.min())}; labels are -1 (unlabeled) or >= 0.")
    return y


def read_npz(path) -> dict:
    """Read an npz with key ``x`` and optional ``y``, ``ids`` for ``ads pool create``."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"npz file {str(path)!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:
        raise StoreError(f"npz file {str(path)!r} cannot be read ({type(e).__name__}: {e}).") from None
    if "x" not in data:
        raise DataError(f"npz file {str(path)!r} has no key 'x' (keys: {sorted(data)}).")
    unknown = set(data) - {"x", "y", "ids"}
    if unknown:
        raise DataError(f"npz file {str(path)!r} has unknown keys {sorted(unknown)}; expected x, y, ids.")
    return data


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_folder(root) -> dict:
    """Read images from ``root``: one sub-folder per class (labeled), or flat (unlabeled).

    All images must have the same size. Greyscale folders stay one channel; any colour
    image makes the store RGB.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"image folder {str(root)!r} does not exist or is not a directory.")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        classes = [p.name for p in subdirs]
        files = [(f, c) for c, d in enumerate(subdirs) for f in sorted(d.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        classes = []
        files = [(f, -1) for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"image folder {str(root)!r} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    images, labels, ids = [], [], []
    size = None
    for f, c in files:
        try:
            with Image.open(f) as im:
                im.load()
                mode = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
                arr = np.asarray(im.convert(mode))
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"image {str(f)!r} cannot be read ({e}).") from None
        if size is None:
            size = arr.shape[:2]
        elif arr.shape[:2] != size:
            raise DataError(f"image {str(f)!r} is {arr.shape[1]}x{arr.shape[0]}; the first image is {size[1]}x{size[0]}.")
        images.append(arr)
        labels.append(c)
        ids.append(str(f.relative_to(root)))
    rgb = any(a.ndim == 3 for a in images)
    x = np.stack([np.repeat(a[..., None], 3, axis=2) if rgb and a.ndim == 2 else (a if a.ndim == 3 else a[..., None]) for a in images])
    out = {"x": x.astype(np.uint8), "ids": np.array(ids)}
    if classes:
        out["y"] = np.array(labels, dtype=np.int64)
        out["classes"] = classes
    return out
