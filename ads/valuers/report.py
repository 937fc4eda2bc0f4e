"""The lowest-valued labeled items, for a person to inspect (``ads value --report``).

PNG: for image stores a grid of the lowest-valued images, each titled with its id, label
and value; for features stores the sorted values (lowest marked) beside a table of the
lowest items. HTML: a table of the lowest items (with the images inlined as PNG for image
stores). Written atomically (:func:`ads._io.atomic_file`); plotting needs matplotlib.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np

from ads._io import atomic_file, atomic_write_text
from ads.errors import MissingDependencyError, ParameterError

SUFFIXES = (".png", ".html")


def check_report_path(path, owner: str = "ads value") -> Path:
    """``path`` if it ends in .png or .html."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ParameterError(f"The '--report' parameter of {owner} must end in .png or .html. Got {str(path)!r}.")
    return path


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("ads value --report needs matplotlib: pip install 'ads[plot]'.") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(ax, img):
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def write_report(out, ids, values, labels, classes, *, images=None, n: int = 36, method: str = "") -> Path:
    """Write the report of the ``n`` lowest-valued items to ``out`` (.png or .html).

    Parameters
    ----------
    ids : (N,) str; values : (N,) float; labels : (N,) int class indices; classes : list of str
    images : (N, H, W, C) uint8, optional
        The items' images (image stores); None for features stores.
    """
    out = check_report_path(out)
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")[: min(n, len(values))]
    rows = [(str(ids[i]), str(classes[int(labels[i])]), float(values[i])) for i in order]
    if out.suffix.lower() == ".html":
        return atomic_write_text(out, _html(rows, None if images is None else [images[i] for i in order], method))
    plt = _plt()
    if images is not None:
        cols = math.ceil(math.sqrt(len(order)))
        nrows = math.ceil(len(order) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(1.7 * cols, 1.9 * nrows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, i, (id_, lab, v) in zip(axes.ravel(), order, rows):
            ax.axis("on")
            _show(ax, images[i])
            ax.set_title(f"{id_}\n{lab}  {v:.3g}", fontsize=7)
        fig.suptitle(f"{len(order)} lowest {method} values (id, label, value)", fontsize=10)
    else:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, max(4, 0.22 * min(len(rows), 30) + 1)))
        srt = np.sort(values)
        a1.plot(np.arange(len(srt)), srt, lw=1)
        a1.plot(np.arange(len(order)), srt[: len(order)], "r.", ms=4, label=f"{len(order)} lowest")
        a1.set(xlabel="rank (lowest first)", ylabel=f"{method} value", title=f"{len(values)} values, sorted")
        a1.grid(alpha=0.3)
        a1.legend(fontsize=8)
        a2.axis("off")
        shown = rows[:30]
        table = a2.table(cellText=[[id_, lab, f"{v:.4g}"] for id_, lab, v in shown], colLabels=["id", "label", "value"],
                         loc="upper center")
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        a2.set_title(f"{len(shown)} lowest" + (f" (of {len(rows)} asked)" if len(rows) > len(shown) else ""))
    fig.tight_layout()
    try:
        with atomic_file(out, what="--report") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return out


def _png_uri(img) -> str:
    plt = _plt()
    img = np.asarray(img)
    buf = io.BytesIO()
    plt.imsave(buf, img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255,
               format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _html(rows, images, method) -> str:
    head = "<tr><th>rank</th>" + ("<th>image</th>" if images is not None else "") + "<th>id</th><th>label</th><th>value</th></tr>"
    body = []
    for r, (id_, lab, v) in enumerate(rows):
        img = f'<td><img src="{_png_uri(images[r])}" width="64" style="image-rendering:pixelated"></td>' if images is not None else ""
        body.append(f"<tr><td>{r + 1}</td>{img}<td>{html.escape(id_)}</td><td>{html.escape(lab)}</td><td>{v:.6g}</td></tr>")
    return (f"<!doctype html><meta charset='utf-8'><title>ads value report</title>"
            f"<h1>{len(rows)} lowest {html.escape(method)} values</h1><table border='1' cellpadding='4'>"
            f"{head}{''.join(body)}</table>\n")
