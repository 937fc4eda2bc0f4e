"""Image files into image stores: a CSV manifest or a folder, streamed chunk by chunk.

Every image (JPEG, PNG, WebP, and the other formats Pillow reads) is decoded, turned
upright by its EXIF orientation, converted to one mode (``L`` or ``RGB``; transparency is
composited over white, 16-bit grey scaled to 8 bits) and brought to one size (``resize``
stretches, ``crop`` scales to cover and cuts the centre, ``pad`` scales to fit and pads
with black). Rows go to :func:`ads.pool.write_blocks` a block at a time, so a manifest of
a million files never holds more than one block of decoded images.

When the size or the mode is not given (nor taken from a ``like`` store), a first pass
reads only each file's header: the size is kept if every image has the same, and the
mode is RGB if any image is in colour, else L.

A file that is missing or cannot be decoded stops the import with one line naming it
(and its manifest row) before anything is written; with ``skip_bad`` it is left out and
listed, with the reason, in ``OUT.skipped.csv``.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ads._io import atomic_file
from ads.errors import DataError, ParameterError, StoreError

MODES = ("L", "RGB")
FITS = ("resize", "crop", "pad")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
#: Pillow modes that hold no colour (a palette image is grey when its palette is).
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass
class Entry:
    """One image to import: its file, how the user wrote it, and where it was listed."""

    path: Path
    shown: str
    where: str


def parse_size(value, owner: str = "ads pool create") -> tuple[int, int] | None:
    """``N`` -> (N, N), ``HxW`` -> (H, W), None -> None."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        h, w = value
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(value))
        if not m:
            raise ParameterError(f"The 'size' parameter of {owner} must be N or HxW (e.g. 224 or 96x128). Got {value!r}.")
        h, w = int(m.group(1)), int(m.group(2) or m.group(1))
    if not (isinstance(h, int) and isinstance(w, int)) or h < 1 or w < 1:
        raise ParameterError(f"The 'size' parameter of {owner} must be N or HxW with N, H, W >= 1. Got {value!r}.")
    return int(h), int(w)


# ---------------------------------------------------------------- what to read
def _natural(names):
    """Sorted class names; numerically when every name is an integer ("2" before "10")."""
    names = sorted(set(names))
    if names and all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return names


def labels_from_names(names, classes, where_row, what: str):
    """Class-name labels (None or "" = unlabeled) as int64 ``y`` (-1 = unlabeled) and the
    class list: ``classes`` if given (every name must be in it), else the names sorted.

    ``where_row(i)`` says where label ``i`` came from, for the message."""
    if classes is None:
        classes = _natural(v for v in names if v)
    index = {c: k for k, c in enumerate(classes)}
    y = np.full(len(names), -1, dtype=np.int64)
    for i, v in enumerate(names):
        if not v:
            continue
        k = index.get(v)
        if k is None:
            shown = ", ".join(classes[:10]) + (" ..." if len(classes) > 10 else "")
            raise DataError(f"{where_row(i)}: label {v!r} is not one of the {len(classes)} classes ({shown}) of {what}.")
        y[i] = k
    return y, list(classes)


def read_manifest(path):
    """Read a CSV manifest: a ``path`` column, optional ``label`` (a class name, empty =
    unlabeled) and ``id`` (default: the path as written). Relative paths are relative to
    the manifest's folder. Returns ``(entries, labels or None, ids)``."""
    path = Path(path)
    name = f"manifest {str(path)!r}"
    if not path.is_file():
        raise StoreError(f"{name} does not exist or is not a file.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise DataError(f"{name} is not UTF-8 text ({e.reason} at byte {e.start}).") from None
    except csv.Error as e:
        raise DataError(f"{name} is not a readable CSV file ({e}).") from None
    header = [h for h in header if h is not None]
    if "path" not in header:
        raise DataError(f"{name} has no 'path' column (columns: {', '.join(map(repr, header)) or 'none'}).")
    if not rows:
        raise DataError(f"{name} lists no images.")
    base = path.parent
    entries, labels, ids = [], [], []
    has_label, has_id = "label" in header, "id" in header
    for i, row in enumerate(rows, start=1):
        where = f"{name} row {i}"
        p = (row.get("path") or "").strip()
        if not p:
            raise DataError(f"{where}: the 'path' cell is empty.")
        entries.append(Entry(path=base / p, shown=p, where=where))
        labels.append((row.get("label") or "").strip() if has_label else "")
        if has_id:
            pid = (row.get("id") or "").strip()
            if not pid:
                raise DataError(f"{where}: the 'id' cell is empty (leave out the column to use the paths as ids).")
            ids.append(pid)
        else:
            ids.append(p)
    if len(set(ids)) != len(ids):
        seen = set()
        for i, pid in enumerate(ids, start=1):
            if pid in seen:
                raise DataError(f"{name} row {i}: id {pid!r} is listed before (ids must be unique).")
            seen.add(pid)
    return entries, (labels if has_label else None), np.array(ids, dtype=str)


def folder_entries(root):
    """The images of ``root``: one sub-folder per class (``(entries, names, classes)``, the
    class names sorted), or flat (unlabeled: names None). Ids: the paths below ``root``."""
    root = Path(root)
    name = f"image folder {str(root)!r}"
    if not root.is_dir():
        raise StoreError(f"{name} does not exist or is not a directory.")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        classes = [p.name for p in subdirs]
        files = [(f, d.name) for d in subdirs for f in sorted(d.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        classes = None
        files = [(f, "") for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{name} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    entries = [Entry(path=f, shown=str(f), where=name) for f, _ in files]
    ids = np.array([str(f.relative_to(root)) for f, _ in files], dtype=str)
    names = [c for _, c in files] if classes else None
    return entries, names, classes, ids


# ---------------------------------------------------------------- decoding
def _why(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "it is a directory"
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return "not an image Pillow can read"
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _is_colour(im) -> bool:
    if im.mode in _GREY_MODES:
        return False
    if im.mode in ("P", "PA"):
        pal = im.getpalette() or []
        return any(not (pal[i] == pal[i + 1] == pal[i + 2]) for i in range(0, len(pal) - 2, 3))
    return True


def _probe(path: Path):
    """``((width, height), colour)`` from the file's header (nothing decoded)."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # turned upright on load: width and height swap
            w, h = h, w
        return (w, h), _is_colour(im)


def _to_mode(im, mode: str):
    from PIL import Image

    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode.startswith("I;16"):  # 16-bit grey: 0..65535 onto 0..255
        a = np.asarray(im, dtype=np.float64) / 257.0
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    elif im.mode in ("I", "F"):
        im = Image.fromarray(np.clip(np.rint(np.asarray(im, dtype=np.float64)), 0, 255).astype(np.uint8))
    if "A" in im.mode or "a" in im.mode:  # transparency over white, as a viewer shows it
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return im if im.mode == mode else im.convert(mode)


def load_image(path, mode: str, size: tuple[int, int] | None, fit: str = "resize") -> np.ndarray:
    """One image file as uint8 (H, W) for mode L or (H, W, 3) for RGB, upright, at
    ``size`` (H, W) if given. Raises what Pillow raises for a bad file."""
    from PIL import Image, ImageOps

    bilinear = Image.Resampling.BILINEAR
    with Image.open(path) as im:
        if size is not None and im.format == "JPEG":
            side = max(size)
            im.draft(mode, (side, side))  # decode at 1/2, 1/4 or 1/8 scale when still >= the size
        im = ImageOps.exif_transpose(im)
        im = _to_mode(im, mode)
        if size is not None and im.size != (size[1], size[0]):
            wh = (size[1], size[0])
            if fit == "resize":
                im = im.resize(wh, bilinear)
            elif fit == "crop":
                im = ImageOps.fit(im, wh, bilinear)
            else:
                im = ImageOps.pad(im, wh, bilinear, color=0 if mode == "L" else (0, 0, 0))
        return np.asarray(im, dtype=np.uint8)


def _bar(total, desc, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=not progress, leave=False, mininterval=0.5)


# ---------------------------------------------------------------- the import
def _like(like):
    """(mode, (H, W), classes) of an image store ``like``."""
    from ads.pool import open_pool

    store = open_pool(like, role="labeled store", validate=False)
    if store.kind != "images":
        raise ParameterError(f"--like {str(like)!r} is a features store; image files are read into an image store "
                             f"(give an image store, or --mode and --size).")
    h, w, c = store.item_shape
    if c not in (1, 3):
        raise ParameterError(f"--like {str(like)!r} has {c} channels; ads writes L (1) or RGB (3) images.")
    return ("L" if c == 1 else "RGB"), (int(h), int(w)), store.classes


def report_path(out) -> Path:
    """Where the skipped files of store ``out`` are listed: ``OUT.skipped.csv`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".skipped.csv")


class _Reader:
    """Decodes ``entries`` for one import: settles the size and mode (a header scan when
    either is unknown), then yields blocks of rows; unreadable files stop it with one
    line, or with ``skip_bad`` are recorded in ``bad`` (entry index -> reason)."""

    def __init__(self, entries, what, *, size, fit, mode, skip_bad, progress, report_name):
        self.entries, self.what, self.fit, self.skip_bad, self.progress = entries, what, fit, skip_bad, progress
        self.report_name = report_name
        self.bad: dict[int, str] = {}
        if size is None or mode is None:
            size, mode = self._scan(size, mode)
        self.size, self.mode = size, mode
        self.item = (*size, 3 if mode == "RGB" else 1)

    def _fail_or_skip(self, i, e):
        why, entry = _why(e), self.entries[i]
        if not self.skip_bad:
            raise DataError(f"{entry.where}: image {entry.shown!r} cannot be read ({why}); --skip-bad skips "
                            f"unreadable files and lists them in {self.report_name}.")
        self.bad[i] = why

    def _scan(self, size, mode):
        first = odd = None
        colour = False
        with _bar(len(self.entries), "scan headers", self.progress) as bar:
            for i, entry in enumerate(self.entries):
                bar.update(1)
                try:
                    wh, c = _probe(entry.path)
                except MemoryError:
                    raise
                except Exception as e:  # Pillow raises many types for a damaged file
                    self._fail_or_skip(i, e)
                    continue
                colour = colour or c
                if first is None:
                    first = wh
                elif odd is None and wh != first:
                    odd = (i, wh)
        if first is None:
            raise DataError(f"{self.what}: no image could be read (the reasons are listed in {self.report_name}).")
        if size is None:
            if odd is not None:
                (i, (w2, h2)), (w1, h1) = odd, first
                raise DataError(f"{self.entries[i].where}: image {self.entries[i].shown!r} is {w2}x{h2}; the first image is "
                                f"{w1}x{h1}: pass --size N or --size HxW to bring every image to one size (224 suits "
                                f"the pretrained embedder).")
            size = (first[1], first[0])
        return size, mode or ("RGB" if colour else "L")

    def blocks(self, step: int):
        """``(rows, block)`` of at most ``step`` decoded images (the rows' entry indices)."""
        item, n = self.item, len(self.entries)
        with _bar(n, f"read images ({self.mode} {self.size[0]}x{self.size[1]})", self.progress) as bar:
            buf, rows = np.empty((step, *item), np.uint8), []
            for i, entry in enumerate(self.entries):
                bar.update(1)
                if i in self.bad:
                    continue
                try:
                    a = load_image(entry.path, self.mode, self.size, self.fit)
                except MemoryError:
                    raise
                except Exception as e:  # Pillow raises many types for a damaged file
                    self._fail_or_skip(i, e)
                    continue
                buf[len(rows)] = a.reshape(item)
                rows.append(i)
                if len(rows) == step:
                    yield np.array(rows), buf
                    buf, rows = np.empty((step, *item), np.uint8), []
            if rows:
                yield np.array(rows), buf[: len(rows)]


def _classes_for(what, *, classes, like, folder_classes):
    """The class list of an import (None: from the labels) and the like store's mode/size."""
    like_mode = like_size = None
    if like is not None:
        like_mode, like_size, like_classes = _like(like)
        if classes is not None and list(classes) != list(like_classes):
            raise ParameterError(f"--classes {list(classes)} differ from the classes of --like {str(like)!r}: {like_classes}.")
        if like_classes:
            classes = list(like_classes)
            unknown = [c for c in folder_classes or [] if c not in classes]
            if unknown:
                raise DataError(f"{what}: sub-folder {unknown[0]!r} is not a class of --like {str(like)!r} "
                                f"(classes: {', '.join(classes)}).")
    elif folder_classes is not None:
        if classes is not None and list(classes) != list(folder_classes):
            raise ParameterError(f"--classes {list(classes)} differ from the sub-folders of {what}: {folder_classes}.")
        classes = list(folder_classes)
    return classes, like_mode, like_size


def import_images(out, entries, *, ids, names=None, classes=None, folder_classes=None, size=None,
                  fit: str = "resize", mode: str | None = None, like=None, skip_bad: bool = False,
                  progress: bool = True, overwrite: bool = False, what: str = "images") -> dict:
    """Write the image files ``entries`` into a new image store ``out``, streamed.

    Parameters
    ----------
    entries : list of Entry
        The files, in store order.
    ids : (N,) str
        One unique id per entry.
    names : list of str, optional
        Class-name labels per entry ("" = unlabeled), mapped onto ``classes``, the
        ``like`` store's classes, or the sorted names.
    folder_classes : list of str, optional
        The class sub-folders of a folder import (checked against ``classes``/``like``).
    size : int, "HxW" or (H, W), optional
        Target size; default: the ``like`` store's, else kept if every image shares one.
    fit : {"resize", "crop", "pad"}
    mode : {"L", "RGB"}, optional
        Default: the ``like`` store's, else RGB if any image is in colour, else L.
    like : path, optional
        An image store (e.g. the labeled store) whose mode, size and classes to match.
    skip_bad : bool
        Leave out unreadable files and list them in ``OUT.skipped.csv`` (path,reason);
        without it the first one stops the import, and nothing is written.

    Returns a dict: ``n`` (rows written), ``skipped`` (count), ``report`` (the report's
    path, with ``skip_bad``), ``mode``, ``size``.
    """
    from ads.pool import _block_rows, check_output, write_blocks

    owner = "ads pool create"
    if mode is not None and mode not in MODES:
        raise ParameterError(f"The 'mode' parameter of {owner} must be one of {list(MODES)}. Got {mode!r}.")
    if fit not in FITS:
        raise ParameterError(f"The 'fit' parameter of {owner} must be one of {list(FITS)}. Got {fit!r}.")
    size = parse_size(size, owner)
    classes, like_mode, like_size = _classes_for(what, classes=classes, like=like, folder_classes=folder_classes)
    if like_mode is not None and mode is not None and mode != like_mode:
        raise ParameterError(f"--mode {mode} differs from the {like_mode} images of --like {str(like)!r}.")
    mode, size = mode or like_mode, size or like_size
    y = None
    if names is not None:
        y, classes = labels_from_names(names, classes, lambda i: entries[i].where, what)
    check_output(out, overwrite)
    report = report_path(out)
    reader = _Reader(entries, what, size=size, fit=fit, mode=mode, skip_bad=skip_bad, progress=progress,
                     report_name=report.name)
    n = len(entries)
    step = max(1, _block_rows(reader.item, np.uint8, n))
    write_blocks(out, reader.blocks(step), n=n, item_shape=reader.item, dtype=np.uint8, ids=ids, y=y,
                 classes=classes or [], overwrite=overwrite, what=what)
    result = {"n": n - len(reader.bad), "skipped": len(reader.bad), "mode": reader.mode, "size": list(reader.size)}
    if skip_bad:  # always written, so that an old report never describes this store
        with atomic_file(report, what="report") as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "reason"])
            for i in sorted(reader.bad):
                w.writerow([entries[i].shown, reader.bad[i]])
        result["report"] = str(report)
    return result


def read_folder(root, *, size=None, fit: str = "resize", mode: str | None = None) -> dict:
    """Read every image of ``root`` into memory (for small folders; ``ads pool create
    --from-folder`` streams instead): ``{"x", "ids"}`` and, for class sub-folders,
    ``{"y", "classes"}``. Size and mode default as in :func:`import_images`."""
    entries, names, classes, ids = folder_entries(root)
    what = f"image folder {str(root)!r}"
    reader = _Reader(entries, what, size=parse_size(size), fit=fit, mode=mode, skip_bad=False, progress=False,
                     report_name="the report")
    x = np.concatenate([b for _, b in reader.blocks(len(entries))])
    out = {"x": x, "ids": ids}
    if classes:
        out["y"], out["classes"] = labels_from_names(names, classes, lambda i: entries[i].where, what)
    return out
