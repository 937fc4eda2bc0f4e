"""Embeddings a user already has (CLIP, DINOv2, a domain model) into features stores.

``.npy`` arrays are memory-mapped and parquet files read one row group batch at a time;
both are written through :func:`ads.pool.write_blocks` a block at a time, so an array
larger than memory becomes a store. A features store's vectors are the embeddings
``ads select`` uses (probabilities come from a logistic-regression head on the labeled
vectors): nothing is trained or downloaded.

Labels are integers (-1 = unlabeled) or class names (empty or null = unlabeled); names
map onto ``--classes``, the ``like`` store's classes, or the names sorted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ads.errors import DataError, MissingDependencyError, ParameterError, StoreError


def _bar(total, desc, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", file=sys.stderr, disable=not progress, leave=False, mininterval=0.5)


def read_npy(path, what: str = "npy file"):
    """``path`` memory-mapped (read only); nothing is read until a block is sliced."""
    path = Path(path)
    name = f"{what} {str(path)!r}"
    if not path.is_file():
        raise StoreError(f"{name} does not exist or is not a file.")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, OSError, EOFError, UnpicklingError for a bad file
        raise StoreError(f"{name} cannot be read as .npy ({type(e).__name__}: {' '.join(str(e).split())}).") from None


def read_ids(path, n: int) -> np.ndarray:
    """Ids from ``.npy`` (strings or integers) or a text file (one id a line)."""
    path = Path(path)
    name = f"ids file {str(path)!r}"
    if path.suffix.lower() == ".npy":
        a = np.asarray(read_npy(path, "ids file"))
        if a.dtype.kind not in "UiuS":
            raise DataError(f"{name} must hold strings or integers. Got {a.dtype}.")
        ids = a.astype(str).reshape(-1) if a.ndim == 1 else None
        if ids is None:
            raise DataError(f"{name} must be 1-D. Got shape {a.shape}.")
    else:
        lines = _text_lines(path, name)
        ids = np.array(lines, dtype=str)
    if ids.shape != (n,):
        raise DataError(f"{name} has {ids.shape[0]} ids; 'x' has {n} rows.")
    return ids


def _text_lines(path: Path, name: str) -> list[str]:
    if not path.is_file():
        raise StoreError(f"{name} does not exist or is not a file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{name} is not UTF-8 text ({e.reason} at byte {e.start}).") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def read_labels(path, n: int):
    """Labels from ``.npy`` (integers, -1 = unlabeled, or class names) or a text file (one
    class name a line, empty = unlabeled): ``("ints", y)`` or ``("names", list)``."""
    path = Path(path)
    name = f"labels file {str(path)!r}"
    if path.suffix.lower() == ".npy":
        a = np.asarray(read_npy(path, "labels file"))
        if a.ndim != 1:
            raise DataError(f"{name} must be 1-D. Got shape {a.shape}.")
        if a.dtype.kind in "US":
            out = ("names", [str(v).strip() for v in a.astype(str)])
        elif a.dtype.kind in "iu":
            out = ("ints", a.astype(np.int64))
        else:
            raise DataError(f"{name} must hold integer labels (-1 = unlabeled) or class names. Got {a.dtype}.")
    else:
        out = ("names", [v.strip() for v in _text_lines(path, name)])
    if len(out[1]) != n:
        raise DataError(f"{name} has {len(out[1])} labels; 'x' has {n} rows.")
    return out


def _like_features(like, d: int):
    """The classes of a features store ``like`` whose vectors have ``d`` dimensions."""
    if like is None:
        return None
    from ads.pool import open_pool

    store = open_pool(like, role="labeled store", validate=False)
    if store.kind != "features":
        raise ParameterError(f"--like {str(like)!r} is an image store; vectors are written as a features store.")
    if store.item_shape[0] != d:
        raise DataError(f"the vectors have {d} dimensions; --like {str(like)!r} has {store.item_shape[0]}.")
    return list(store.classes)


def resolve_labels(labels, classes, like_classes, where_row, what):
    """``(y, classes)`` from ``("ints", y)`` / ``("names", list)`` / None."""
    from ads.image_files import labels_from_names

    if like_classes is not None:
        if classes is not None and list(classes) != like_classes:
            raise ParameterError(f"--classes {list(classes)} differ from the classes of --like: {like_classes}.")
        classes = like_classes
    if labels is None:
        return None, classes
    kind, values = labels
    if kind == "names":
        return labels_from_names(values, classes, where_row, what)
    return values, classes


def import_array(out, x, *, ids=None, labels=None, classes=None, like=None, progress: bool = True,
                 overwrite: bool = False, what: str = "array") -> dict:
    """Write array ``x`` (a memory-mapped ``.npy``: float (N, D) features or uint8 images)
    into store ``out`` block by block."""
    from ads.pool import _block_rows, check_output, infer_kind, write_blocks

    kind = infer_kind(x, what)
    n = int(x.shape[0])
    like_classes = _like_features(like, int(x.shape[1])) if kind == "features" else None
    y, classes = resolve_labels(labels, classes, like_classes, lambda i: f"{what} row {i}", what)
    check_output(out, overwrite)
    step = max(1, _block_rows(x.shape[1:], np.float32 if kind == "features" else x.dtype, n))

    def blocks():
        with _bar(n, "write rows", progress) as bar:
            for s in range(0, n, step):
                e = min(n, s + step)
                yield np.arange(s, e), np.asarray(x[s:e])
                bar.update(e - s)

    write_blocks(out, blocks(), n=n, item_shape=x.shape[1:], dtype=x.dtype, ids=ids, y=y,
                 classes=classes, overwrite=overwrite, what=what)
    return {"n": n}


# ---------------------------------------------------------------- parquet
def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("--from-parquet needs pyarrow: pip install pyarrow (or the extra: "
                                     "pip install 'ads[parquet]').") from None
    return pa, pq


def _numeric(pa, t) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def import_parquet(out, path, *, classes=None, like=None, progress: bool = True, overwrite: bool = False) -> dict:
    """Write a parquet file's vectors into features store ``out``, one batch at a time.

    The vectors are a list or fixed-size-list column ``embedding``, or else every numeric
    column other than ``id`` and ``label``. Optional ``id`` (strings or integers) and
    ``label`` (integers, -1 or null = unlabeled; or class names, empty or null = unlabeled).
    """
    pa, pq = _pyarrow()
    from ads.pool import _block_rows, check_output, write_blocks

    path = Path(path)
    what = f"parquet file {str(path)!r}"
    if not path.is_file():
        raise StoreError(f"{what} does not exist or is not a file.")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a file it cannot read
        raise StoreError(f"{what} cannot be read ({type(e).__name__}: {' '.join(str(e).split())}).") from None
    schema = pf.schema_arrow
    n = int(pf.metadata.num_rows)
    if n == 0:
        raise DataError(f"{what} has no rows.")
    if "embedding" in schema.names:
        t = schema.field("embedding").type
        listy = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
        if not listy or not _numeric(pa, t.value_type):
            raise DataError(f"{what}: column 'embedding' must be a list of numbers. Got {t}.")
        columns = ["embedding"]
        if pa.types.is_fixed_size_list(t):
            d = int(t.list_size)
        else:
            first = next(pf.iter_batches(batch_size=1, columns=columns)).column(0)
            if first.null_count:
                raise DataError(f"{what} row 0: 'embedding' is null.")
            d = len(first[0])
    else:
        columns = [c for c in schema.names if c not in ("id", "label")]
        other = [c for c in columns if not _numeric(pa, schema.field(c).type)]
        if other:
            raise DataError(f"{what}: no 'embedding' column, and column {other[0]!r} ({schema.field(other[0]).type}) is not "
                            f"numeric; give the vectors as one list column 'embedding', or as numeric columns only "
                            f"(besides 'id' and 'label').")
        if not columns:
            raise DataError(f"{what} has no vectors: no 'embedding' column and no numeric columns.")
        d = len(columns)
    if d < 1:
        raise DataError(f"{what}: the vectors have no dimensions.")
    ids = labels = None
    if "id" in schema.names:
        col = pf.read(columns=["id"]).column("id")
        if col.null_count:
            raise DataError(f"{what} row {int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))}: 'id' is null.")
        ids = np.array([str(v) for v in col.to_pylist()], dtype=str)
    if "label" in schema.names:
        col = pf.read(columns=["label"]).column("label")
        t = col.type
        if pa.types.is_integer(t):
            labels = ("ints", np.array([-1 if v is None else v for v in col.to_pylist()], dtype=np.int64))
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
            labels = ("names", [("" if v is None else str(v).strip()) for v in col.to_pylist()])
        else:
            raise DataError(f"{what}: column 'label' must hold integers (-1 = unlabeled) or class names. Got {t}.")
    y, classes = resolve_labels(labels, classes, _like_features(like, d), lambda i: f"{what} row {i}", what)
    check_output(out, overwrite)
    step = max(1, _block_rows((d,), np.float32, n))

    def to_matrix(batch, s):
        if columns == ["embedding"]:
            col = batch.column(0)
            if col.null_count:
                i = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
                raise DataError(f"{what} row {s + i}: 'embedding' is null.")
            if not pa.types.is_fixed_size_list(col.type):
                lens = np.diff(np.asarray(col.offsets))
                if (lens != d).any():
                    i = int(np.argmax(lens != d))
                    raise DataError(f"{what} row {s + i}: 'embedding' has {int(lens[i])} values; row 0 has {d}.")
            return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), d)
        return np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in columns])

    def blocks():
        s = 0
        with _bar(n, "read vectors", progress) as bar:
            for batch in pf.iter_batches(batch_size=step, columns=columns):
                block = to_matrix(batch, s)
                yield np.arange(s, s + len(block)), block
                s += len(block)
                bar.update(len(block))

    write_blocks(out, blocks(), n=n, item_shape=(d,), dtype=np.float32, ids=ids, y=y,
                 classes=classes, overwrite=overwrite, what=what)
    return {"n": n}
