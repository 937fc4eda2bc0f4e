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
or interrupted write never leaves a half-written store behind. Every chunk carries a
crc32c checksum (zarr v3's ``crc32c`` codec after zstd) and every chunk is written, even
one that holds only the fill value, so a damaged or deleted chunk is detected instead of
read as other numbers. Stores written before checksums still open (``checksums: false``
in :meth:`Pool.describe`).

Opening a store checks the zarr format (3), the schema attributes, the arrays' dtypes and
shapes, that every chunk of every array exists, and decodes every chunk (NaN/inf in
features, label range, unique ids). A chunk that cannot be decoded later (changed after
opening) raises :class:`~ads.errors.StoreError` naming the store and the array.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ads._io import atomic_dir, atomic_write_text, check_target, deferred_interrupt, replace_dir  # noqa: F401 (re-exported)
from ads._validation import check_int
from ads.errors import AdsError, DataError, OutputError, StoreError

SCHEMA_VERSION = 1
KINDS = ("images", "features")
_CHUNK_BYTES = 4 * 2**20
#: Chunks of ``x`` written per zarr call: an interrupt is honoured between two calls.
_CHUNKS_PER_WRITE = 4


def _reason(e: BaseException) -> str:
    """Why zarr could not read an array, in a few words on one line."""
    text = str(e)
    if isinstance(e, json.JSONDecodeError):
        why = f"its zarr.json is not valid JSON ({text})"
    elif isinstance(e, ValueError) and "checksum" in text.lower():
        why = "a chunk fails its crc32c checksum (the file was changed or damaged)"
    elif "decompress" in text.lower() or "decod" in text.lower():
        why = f"a chunk cannot be decoded ({type(e).__name__}: {text})"
    else:
        why = f"{type(e).__name__}: {text}"
    return " ".join(why.split())


@contextmanager
def _reading(where: str, name: str, rows: str = ""):
    """Turn any error of zarr reading ``name`` (bad chunk bytes, a garbled zarr.json, a
    failing checksum) into one :class:`StoreError` naming the store and the array."""
    try:
        yield
    except (AdsError, MemoryError):
        raise
    except Exception as e:
        raise StoreError(f"{where} array {name!r}{rows} cannot be read: {_reason(e)}.") from None


def _has_checksum(arr) -> bool:
    from zarr.codecs import Crc32cCodec

    try:
        return any(isinstance(c, Crc32cCodec) for c in arr.compressors)
    except (AttributeError, TypeError):
        return False


def _chunk_keys(arr):
    """``(coords, key)`` of every chunk (or shard) of ``arr``'s grid, in order."""
    grid = tuple(arr.metadata.chunk_grid.chunk_shape)
    enc = arr.metadata.chunk_key_encoding
    counts = [math.ceil(s / c) if c else 0 for s, c in zip(arr.shape, grid)]
    for coords in itertools.product(*(range(k) for k in counts)):
        yield coords, enc.encode_chunk_key(coords)


def _check_chunks(arr, array_dir: Path, where: str, name: str, strict: bool) -> None:
    """Every chunk of ``arr`` must be a file under ``array_dir``: a missing chunk would
    read back as the fill value (zeros, label 0, empty ids)."""
    if not strict:
        return
    rows = int(arr.metadata.chunk_grid.chunk_shape[0]) if arr.ndim else 1
    for coords, key in _chunk_keys(arr):
        if not (array_dir / key).is_file():
            a = coords[0] * rows if coords else 0
            b = min(int(arr.shape[0]), a + rows) - 1 if arr.ndim else 0
            raise StoreError(f"{where} array {name!r} is missing chunk {name}/{key} (rows {a}..{b}): the store is "
                             f"damaged; a missing chunk would read as fill values.")


def _scan(arr, where: str, name: str):
    """Yield ``(start, block)`` over ``arr`` one chunk of rows at a time; a chunk that
    cannot be decoded raises :class:`StoreError` naming its rows."""
    n = int(arr.shape[0])
    rows = max(1, int(arr.chunks[0]))
    for s in range(0, n, rows):
        e = min(n, s + rows)
        with _reading(where, name, f" rows {s}..{e - 1}"):
            block = np.asarray(arr[s:e])
        yield s, block


@dataclass
class Pool:
    """An opened, validated pool store. Arrays are read lazily, block by block."""

    path: Path
    kind: str
    classes: list[str]
    n: int
    item_shape: tuple
    _group: object
    where: str = "store"

    def _read(self, name: str, fn, rows: str = ""):
        with _reading(self.where, name, rows):
            return fn()

    @property
    def x(self):
        """The zarr array ``x`` (lazy). Read it through :meth:`blocks`, :meth:`read_x`
        or :meth:`take`, which turn a damaged chunk into one :class:`StoreError`."""
        return self._read("x", lambda: self._group["x"])

    @property
    def has_labels(self) -> bool:
        return self._read("y", lambda: "y" in self._group)

    @property
    def has_hidden(self) -> bool:
        return self._read("hidden", lambda: "hidden" in self._group)

    def ids(self) -> np.ndarray:
        return _strings(self._read("ids", lambda: self._group["ids"][:]))

    def ids_at(self, rows) -> np.ndarray:
        """The ids of ``rows`` (any order), reading only the chunks that hold them."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.empty(0, dtype=str)
        uniq, inv = np.unique(rows, return_inverse=True)
        a = self._read("ids", lambda: np.asarray(self._group["ids"].oindex[uniq]), f" rows {uniq[0]}..{uniq[-1]}")
        return _strings(a)[inv]

    def y(self) -> np.ndarray | None:
        """Labels (int64, -1 = unlabeled) or None when the store has no ``y``."""
        if not self.has_labels:
            return None
        return np.asarray(self._read("y", lambda: self._group["y"][:]), dtype=np.int64)

    def hidden(self, name: str = "y") -> np.ndarray | None:
        """Hidden simulation array (true labels, source tags) or None."""
        if not self.has_hidden or not self._read(f"hidden/{name}", lambda: name in self._group["hidden"]):
            return None
        a = self._read(f"hidden/{name}", lambda: self._group["hidden"][name][:])
        return np.asarray(a, dtype=np.int64) if name == "y" else _strings(a)

    @property
    def chunk_rows(self) -> int:
        return int(self.x.chunks[0])

    @property
    def checksums(self) -> bool:
        """Whether every array carries a crc32c checksum per chunk (stores written by ads
        since checksums were added); older stores read without them."""
        arrays = [self._group[n] for n in ("x", "ids", "y") if n in self._group]
        if self.has_hidden:
            h = self._group["hidden"]
            arrays += [h[n] for n in h.array_keys()]
        return all(_has_checksum(a) for a in arrays)

    def blocks(self, rows: int | None = None):
        """Yield ``(start, x_block)`` over the store, ``rows`` at a time (chunk-aligned)."""
        rows = rows or self.chunk_rows
        x = self.x
        for s in range(0, self.n, rows):
            e = min(self.n, s + rows)
            with _reading(self.where, "x", f" rows {s}..{e - 1}"):
                block = np.asarray(x[s:e])
            yield s, block

    def read_x(self) -> np.ndarray:
        return self._read("x", lambda: np.asarray(self.x[:]))

    def rows_of(self, ids) -> np.ndarray:
        """The row of each id (int64, in the order given); the id -> row map is built once
        per opened store."""
        index = self.__dict__.get("_row_index")
        if index is None:
            index = self.__dict__["_row_index"] = {pid: i for i, pid in enumerate(self.ids())}
        return np.array([index[pid] for pid in ids], dtype=np.int64)

    def take(self, rows) -> np.ndarray:
        """Rows ``rows`` (any order, no repeats needed) of ``x``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        out = np.empty((rows.size, *self.item_shape), dtype=self.x.dtype)
        if rows.size:
            x = self.x
            out[order] = self._read("x", lambda: np.asarray(x.oindex[rows[order]]))
        return out

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
            "checksums": self.checksums,
        }
        if y is not None:
            counts = np.bincount(y[y >= 0], minlength=len(self.classes))
            info["per_class"] = {c: int(n) for c, n in zip(self.classes, counts)}
        return info


def id_hashes(ids) -> np.ndarray:
    """64-bit FNV-1a-style hashes of a fixed-width unicode array (vectorised over rows)."""
    ids = np.ascontiguousarray(np.asarray(ids, dtype=str))
    if ids.size == 0:
        return np.empty(0, dtype=np.uint64)
    codes = ids.view(np.uint32).reshape(ids.shape[0], -1).astype(np.uint64)
    h = np.full(ids.shape[0], 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for j in range(codes.shape[1]):  # trailing NULs are padding (widths differ by chunk): skipped
            c = codes[:, j]
            h = np.where(c != 0, (h ^ c) * prime, h)
    return h


#: Up to this many rows the ids' hashes are sorted in memory (8 bytes a row); above it they
#: are spilled to a temporary directory in 256 buckets by their top byte and each bucket is
#: sorted alone, so opening a pool of any size holds 8 bytes x rows / 256 of hashes.
HASH_MEMORY_ROWS = 1 << 22


def _repeated_hashes(ids, where: str, n: int) -> np.ndarray:
    """The 64-bit id hashes (:func:`id_hashes`) that occur more than once in ``ids``."""
    def repeats(h):
        h.sort()
        return h[1:][h[1:] == h[:-1]]

    def in_memory():
        h = np.empty(n, dtype=np.uint64)
        for s, b in _scan(ids, where, "ids"):
            h[s : s + len(b)] = id_hashes(_strings(b))
        return np.unique(repeats(h))

    if n <= HASH_MEMORY_ROWS:
        return in_memory()
    try:
        return _spilled_repeats(ids, where, repeats)
    except OSError:  # no room in the temporary directory: sort in memory instead
        return in_memory()


def _spilled_repeats(ids, where: str, repeats) -> np.ndarray:
    import tempfile

    found = []
    with tempfile.TemporaryDirectory(prefix="ads-ids-") as d:
        paths = [os.path.join(d, f"{k:02x}") for k in range(256)]
        files = [open(p, "wb") for p in paths]
        try:
            for _s, b in _scan(ids, where, "ids"):
                h = id_hashes(_strings(b))
                top = (h >> np.uint64(56)).astype(np.intp)
                order = np.argsort(top, kind="stable")
                bounds = np.concatenate([[0], np.cumsum(np.bincount(top, minlength=256))])
                h = h[order]
                for k in np.flatnonzero(np.diff(bounds)):
                    files[k].write(h[bounds[k] : bounds[k + 1]].tobytes())
        finally:
            for f in files:
                f.close()
        for p in paths:
            found.append(repeats(np.fromfile(p, dtype=np.uint64)))
    return np.unique(np.concatenate(found))


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
        Check every rule of the schema: every chunk of every array present, every chunk
        decoded (a streamed scan of ``x``: NaN/inf in features), ids unique strings,
        labels in range.
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
        raise StoreError(f"{where} is not a zarr v3 group ({_reason(e)}).") from None
    fmt = getattr(group.metadata, "zarr_format", None)
    if fmt != 3:
        raise StoreError(f"{where} is a zarr v{fmt} group; ads reads zarr v3 stores (write it again with 'ads pool create').")
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
        with _reading(where, name):
            if name not in group:
                raise StoreError(f"{where} has no array {name!r}.")
            if not isinstance(group[name], zarr.Array):
                raise StoreError(f"{where} has a group {name!r} where an array {name!r} was expected.")
    x = group["x"]
    n = int(x.shape[0]) if len(x.shape) else 0
    pool = Pool(path=path, kind=kind, classes=list(classes), n=n, item_shape=tuple(x.shape[1:]), _group=group, where=where)
    if validate:
        _validate(pool, group, where)
    return pool


def _arrays(group, where: str) -> dict:
    """The store's arrays by name (``x``, ``ids``, ``y``, ``hidden/NAME``), metadata read."""
    import zarr

    out = {}
    for name in ("x", "ids", "y"):
        with _reading(where, name):
            if name in group:
                a = group[name]
                if not isinstance(a, zarr.Array):
                    raise StoreError(f"{where} has a group {name!r} where an array {name!r} was expected.")
                out[name] = a
    with _reading(where, "hidden"):
        hidden = group["hidden"] if "hidden" in group else None
    if hidden is not None:
        with _reading(where, "hidden"):
            names = sorted(hidden.array_keys())
        for name in names:
            with _reading(where, f"hidden/{name}"):
                out[f"hidden/{name}"] = hidden[name]
    for name, a in out.items():
        if a.metadata.zarr_format != 3:
            raise StoreError(f"{where} array {name!r} is zarr v{a.metadata.zarr_format}; ads reads zarr v3 stores.")
    return out


def _validate(pool: Pool, group, where: str) -> None:
    arrays = _arrays(group, where)
    x = arrays["x"]
    if pool.kind == "images":
        if x.dtype != np.uint8 or len(x.shape) != 4:
            raise StoreError(
                f"{where} array 'x' must be uint8 of shape (N, H, W, C) for images. "
                f"Got {x.dtype} {tuple(x.shape)}."
            )
        if min(x.shape[1:]) < 1:
            raise StoreError(f"{where} array 'x' has shape {tuple(x.shape)}; images need H, W and C >= 1.")
    else:
        if x.dtype not in (np.float32, np.float64) or len(x.shape) != 2:
            raise StoreError(
                f"{where} array 'x' must be float32 of shape (N, D) for features. "
                f"Got {x.dtype} {tuple(x.shape)}."
            )
        if x.shape[1] < 1:
            raise StoreError(f"{where} array 'x' has shape {tuple(x.shape)}: no features (expected (N, D) with D >= 1).")
    if pool.n == 0:
        raise StoreError(f"{where} array 'x' is empty.")
    ids = arrays["ids"]
    if tuple(ids.shape) != (pool.n,):
        raise StoreError(f"{where} array 'ids' has shape {tuple(ids.shape)}; 'x' has {pool.n} rows.")
    if np.dtype(ids.dtype).kind not in "UTO":
        raise StoreError(f"{where} array 'ids' must hold strings. Got {ids.dtype}.")
    if "y" in arrays:
        y = arrays["y"]
        if tuple(y.shape) != (pool.n,):
            raise StoreError(f"{where} array 'y' has shape {tuple(y.shape)}; 'x' has {pool.n} rows.")
        if not np.issubdtype(y.dtype, np.integer):
            raise StoreError(f"{where} array 'y' must hold integers (-1 = unlabeled). Got {y.dtype}.")
    for name, a in arrays.items():
        if name.startswith("hidden/") and tuple(a.shape) != (pool.n,):
            raise StoreError(f"{where} array {name!r} has shape {tuple(a.shape)}; 'x' has {pool.n} rows.")
    # Every chunk must exist. ads writes every chunk of a checksummed store; a store written
    # before checksums skipped the chunks holding only the fill value, which for integer
    # labels (fill 0 = class 0) is a valid chunk, so only their x and strings are held to it.
    for name, a in arrays.items():
        strict = _has_checksum(a) or np.dtype(a.dtype).kind not in "iub"
        _check_chunks(a, pool.path / name, where, name, strict)
    # Decode every chunk. Ids are checked for duplicates through 64-bit hashes, and only
    # rows whose hashes collide are compared (bounded memory: see _repeated_hashes).
    repeated = _repeated_hashes(ids, where, pool.n)
    if repeated.size:
        rows = np.concatenate([s + np.flatnonzero(np.isin(id_hashes(_strings(b)), repeated))
                               for s, b in _scan(ids, where, "ids")])
        values = _strings(np.asarray(ids.oindex[rows]))
        uniq, counts = np.unique(values, return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1][:3]
            raise StoreError(f"{where} array 'ids' has duplicate ids, e.g. {', '.join(repr(str(d)) for d in dup)}.")
    n_classes = len(pool.classes)
    for name in ("y", "hidden/y"):
        if name not in arrays:
            continue
        for s, yv in _scan(arrays[name], where, name):
            yv = np.asarray(yv)
            if name == "y" and n_classes == 0 and (yv >= 0).any():
                i = s + int(np.argmax(yv >= 0))
                raise StoreError(f"{where} array 'y' has label {int(yv[i - s])} at row {i} but attribute 'classes' is "
                                 f"empty; a store with labels lists its class names.")
            bad = (yv < -1) | ((yv >= n_classes) if n_classes else False)
            if np.any(bad):
                i = int(np.argmax(bad))
                raise StoreError(
                    f"{where} array {name!r} has label {int(yv[i])} at row {s + i}; expected -1 or 0..{n_classes - 1} "
                    f"({n_classes} classes)."
                )
    for name, a in arrays.items():
        if name.startswith("hidden/") and name != "hidden/y":
            for _ in _scan(a, where, name):
                pass
    for s, block in _scan(x, where, "x"):
        if pool.kind == "features":
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                i = s + int(np.argmin(finite))
                raise StoreError(f"{where} array 'x' has NaN or inf at row {i} (id {str(pool.ids_at([i])[0])!r}).")


def infer_kind(x: np.ndarray, what: str) -> str:
    """'features' for 2-D float arrays, 'images' for 3-4-D uint8 arrays."""
    return _kind_of(x.ndim, x.dtype, x.shape, what)


def _kind_of(ndim: int, dtype, shape, what: str) -> str:
    if ndim == 2 and np.issubdtype(dtype, np.floating):
        return "features"
    if ndim in (3, 4) and dtype == np.uint8:
        return "images"
    raise DataError(
        f"{what}: 'x' must be float of 2 dims (features) or uint8 of 3-4 dims (images). "
        f"Got {dtype} of shape {tuple(shape)}."
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
    chunk_rows: int | None = None,
) -> Path:
    """Validate arrays and write a pool store atomically (temp dir, then rename).

    Parameters
    ----------
    x : ndarray
        uint8 (N, H, W) or (N, H, W, C) images, or float (N, D) features. A memory-mapped
        array (``np.load(..., mmap_mode="r")``) is read one block of chunks at a time.
    ids : array-like of str, optional
        Unique identifiers; default "0".."N-1".
    y : array-like of int, optional
        Labels, -1 = unlabeled.
    classes : list of str, optional
        Class names; default "0".."max(y)" (or from ``hidden['y']``).
    hidden : dict, optional
        Simulation-only arrays, e.g. ``{"y": true_labels, "source": tags}``.
    chunk_rows : int, optional
        Rows per chunk of ``x`` (``ids``, ``y`` and hidden arrays take 4x as many);
        default: about 4 MiB of ``x`` per chunk.

    An existing store at ``path`` is replaced only with ``overwrite`` (and only if it is a
    zarr store). SIGINT during the write removes the temporary store, then raises
    ``KeyboardInterrupt``; a full disk raises :class:`OutputError` naming ``path``.
    """
    x = x if isinstance(x, np.ndarray) else np.asarray(x)
    n = int(x.shape[0]) if x.ndim else 0
    step = max(1, _block_rows(x.shape[1:], x.dtype, n, chunk_rows))

    def blocks():
        for s in range(0, n, step):
            e = min(n, s + step)
            yield np.arange(s, e), x[s:e]

    return write_blocks(path, blocks(), n=n, item_shape=x.shape[1:], dtype=x.dtype, ids=ids, y=y, classes=classes,
                        hidden=hidden, attrs=attrs, overwrite=overwrite, what=what, chunk_rows=chunk_rows)


def _chunk_rows(item_shape, dtype, n: int, chunk_rows: int | None) -> int:
    """Rows per chunk of ``x``: about ``_CHUNK_BYTES`` of it, or ``chunk_rows``; at most ``n``."""
    if chunk_rows is not None:
        return min(max(1, n), check_int(chunk_rows, "chunk_rows", "write_pool", min_value=1))
    row_bytes = max(1, int(np.prod(item_shape)) * np.dtype(dtype).itemsize)
    return int(max(1, min(n, _CHUNK_BYTES // row_bytes)))


def _block_rows(item_shape, dtype, n: int, chunk_rows: int | None = None) -> int:
    """Rows of ``x`` per zarr call (``_CHUNKS_PER_WRITE`` chunks): what a reader should
    hand :func:`write_blocks` at a time."""
    return _chunk_rows(item_shape, dtype, n, chunk_rows) * _CHUNKS_PER_WRITE


def check_output(path, overwrite: bool) -> None:
    """Raise unless a store may be written at ``path`` (absent, or a zarr store and
    ``overwrite``). Called again by :func:`write_blocks`; readers call it first so that
    a long import fails before it starts."""
    path = Path(path)
    if os.path.lexists(path):
        if not overwrite:
            raise StoreError(f"store {str(path)!r} already exists; choose another path or pass --overwrite.")
        check_target(path, "dir", "store")
        if not (path.is_dir() and not path.is_symlink() and (path / "zarr.json").is_file()):
            raise OutputError(f"cannot write store {str(path)!r}: it exists and is not a zarr store; --overwrite "
                              f"replaces only a store (choose another path).")


def _check_meta(n: int, ids, y, classes, hidden, what: str):
    """``(ids, y, classes, hidden)`` for ``n`` rows, validated: unique string ids, integer
    labels >= -1, class names unique and covering every label."""
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
    for name, a in list(hidden.items()):
        a = np.asarray(a)
        if a.shape != (n,):
            raise DataError(f"{what}: hidden array {name!r} has shape {a.shape}; 'x' has {n} rows.")
        hidden[name] = a if name == "y" else a.astype(str)
    if classes is None:
        top = int(label_src.max()) if label_src is not None and label_src.size else -1
        classes = [str(c) for c in range(top + 1)]
    classes = [str(c) for c in classes]
    if label_src is not None and label_src.size and label_src.max() >= len(classes):
        raise DataError(f"{what}: label {int(label_src.max())} but only {len(classes)} classes.")
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise DataError(f"{what}: class names must be unique. Got {dup[0]!r} more than once.")
    return ids, y, classes, hidden


def write_blocks(
    path,
    blocks,
    *,
    n: int,
    item_shape,
    dtype,
    ids=None,
    y=None,
    classes=None,
    hidden: dict | None = None,
    attrs: dict | None = None,
    overwrite: bool = False,
    what: str | None = None,
    chunk_rows: int | None = None,
) -> Path:
    """Write a pool store from ``blocks`` of rows, streamed: the one writer of ``ads``.

    :func:`write_pool` hands it an array's blocks; the readers of image files, ``.npy``
    and parquet hand it theirs, so a store is never held whole in memory (one block of
    ``_CHUNKS_PER_WRITE`` chunks of ``x`` is).

    Parameters
    ----------
    blocks : iterable of (rows, x_block)
        ``rows`` (int array, increasing) are the rows of the planned ``n`` that
        ``x_block`` (``len(rows)`` items of ``item_shape``) holds. Rows never handed
        over (files skipped as unreadable) are left out of the store, with their ids,
        labels and hidden values. An error raised by the iterable removes the
        temporary store: nothing is written.
    n, item_shape, dtype
        The planned rows and one item's shape and dtype: float (D,) features or uint8
        (H, W) / (H, W, C) images.
    ids, y, classes, hidden, attrs, overwrite, what, chunk_rows
        As in :func:`write_pool`, for the ``n`` planned rows.
    """
    import zarr

    path = Path(path)
    what = what or f"store {str(path)!r}"
    item_shape = tuple(int(d) for d in item_shape)
    dtype = np.dtype(dtype)
    kind = _kind_of(len(item_shape) + 1, dtype, (n, *item_shape), what)
    if kind == "images" and len(item_shape) == 2:
        item_shape = (*item_shape, 1)
    if kind == "features":
        dtype = np.dtype(np.float32)
    if min(item_shape) < 1:
        raise DataError(f"{what}: 'x' has shape {(n, *item_shape)}; every item needs at least one value.")
    ids_given = ids is not None
    ids, y, classes, hidden = _check_meta(n, ids, y, classes, hidden, what)
    check_output(path, overwrite)
    rows = _chunk_rows(item_shape, dtype, n, chunk_rows)
    step = rows * _CHUNKS_PER_WRITE

    def as_block(src, block):
        block = np.asarray(block)
        if block.shape[1:] != item_shape:
            block = block.reshape(len(block), *item_shape)  # (H, W) images get their channel
        if kind == "features":
            block = np.ascontiguousarray(block, dtype=np.float32)
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                i = int(np.argmin(finite))
                name = f" (id {str(ids[src[i]])!r})" if ids_given else ""
                raise DataError(f"{what}: 'x' has NaN or inf at row {int(src[i])}{name}.")
        return block

    # SIGINT is honoured between zarr calls (inside: the temporary store is removed) and
    # never during the final rename (after it: the store is whole).
    with deferred_interrupt() as interrupt, atomic_dir(path, what="store") as tmp:
        try:
            group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            group.attrs.update({"ads_schema": SCHEMA_VERSION, "kind": kind, "classes": classes, **(attrs or {})})
            arr = _create(group, "x", (n, *item_shape), dtype, (rows, *item_shape))
            kept, done = [], 0
            buf, fill = None, 0  # rows gathered until a whole zarr call's worth (chunk-aligned writes)

            def flush(a):
                nonlocal done
                arr[done : done + len(a)] = a
                done += len(a)
                interrupt.check()

            for src, block in blocks:
                src = np.asarray(src, dtype=np.int64)
                block = as_block(src, block)
                if len(src) != len(block):
                    raise DataError(f"{what}: a block of {len(block)} rows came with {len(src)} row numbers.")
                if done + fill + len(block) > n:
                    raise DataError(f"{what}: more than the {n} planned rows were handed over.")
                kept.append(src)
                pos = 0
                while pos < len(block):
                    if fill == 0 and len(block) - pos >= step:  # a whole call's worth: written as it is
                        flush(block[pos : pos + step])
                        pos += step
                        continue
                    if buf is None:
                        buf = np.empty((step, *item_shape), dtype)
                    take = min(step - fill, len(block) - pos)
                    buf[fill : fill + take] = block[pos : pos + take]
                    fill, pos = fill + take, pos + take
                    if fill == step:
                        flush(buf)
                        fill = 0
            if fill:
                flush(buf[:fill])
            if done == 0:
                raise DataError(f"{what}: no rows to write (every item was skipped).")
            if done < n:  # skipped items: the store holds the rows handed over, in order
                keep = np.concatenate(kept)
                arr.resize((done, *item_shape))
                ids, y = ids[keep], (None if y is None else y[keep])
                hidden = {k: v[keep] for k, v in hidden.items()}
            _write_1d(group, "ids", ids, rows)
            if y is not None:
                _write_1d(group, "y", y, rows)
            if hidden:
                hg = group.create_group("hidden")
                for name, a in hidden.items():
                    _write_1d(hg, name, a, rows)
        except BaseException:
            settle_io()  # no zarr task may still write into the temporary directory
            raise
    return path


def _create(group, name, shape, dtype, chunks):
    """An array whose every chunk is written (even one holding only the fill value) and
    carries a crc32c checksum after zstd compression."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, compressors=[ZstdCodec(level=0), Crc32cCodec()],
                              config={"write_empty_chunks": True})


def _write_1d(group, name, a, rows):
    dtype = str if a.dtype.kind in "UOT" else a.dtype
    arr = _create(group, name, a.shape, dtype, (min(rows * 4, a.shape[0]),))
    arr[:] = a


def settle_io(timeout: float = 5.0) -> None:
    """Cancel zarr's unfinished I/O tasks and wait for them.

    After an error or an interrupt inside a zarr call, zarr's event loop (a thread of its
    own) keeps running the call's other tasks: they would write into a temporary
    directory being removed, and report "Event loop is closed" by the hundred when the
    interpreter exits. Uses zarr's ``zarr.core.sync.loop``; does nothing if that moves.
    """
    import asyncio

    try:
        from zarr.core import sync as zsync

        loop = zsync.loop[0]
    except (ImportError, AttributeError, IndexError):
        return
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def _drain():
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    try:
        asyncio.run_coroutine_threadsafe(_drain(), loop).result(timeout + 1)
    except Exception:
        pass


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


def read_npz(path, x_key: str = "x") -> dict:
    """Read an npz with key ``x`` (or ``x_key``) and optional ``y``, ``ids`` for ``ads pool
    create``. The arrays are read whole (an npz cannot be memory-mapped: use ``.npy``
    through :func:`ads.vectors.read_npy` for arrays larger than memory)."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"npz file {str(path)!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:
        raise StoreError(f"npz file {str(path)!r} cannot be read ({type(e).__name__}: {e}).") from None
    if x_key not in data:
        raise DataError(f"npz file {str(path)!r} has no key {x_key!r} (keys: {sorted(data)}).")
    unknown = set(data) - {x_key, "y", "ids"}
    if unknown:
        raise DataError(f"npz file {str(path)!r} has unknown keys {sorted(unknown)}; expected {x_key}, y, ids.")
    data["x"] = data.pop(x_key)
    return data


from ads.image_files import IMAGE_SUFFIXES, read_folder  # noqa: E402, F401 (re-exported; folders are read there)
