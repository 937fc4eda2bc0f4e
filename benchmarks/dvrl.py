"""DVRL use-case benchmark: the DVRL paper's corrupted-sample experiments on real data.

For each data set (UCI Adult, Fashion-MNIST embeddings of our CNN, SMS spam with MiniLM
embeddings; see dvrl_data.py), 20% of the training labels are flipped uniformly to
another class, and the training points are valued by

- ``dvrl``: :class:`ads.dvrl.DVRL` (the authors' algorithm, logistic-regression predictor),
- ``knn_shapley``: :func:`ads.shapley.knn_shapley` (K = 10),
- ``loo``: leave-one-out on L2-regularised logistic regression, value = drop of the
  validation accuracy when the point is left out (``loo_loglik``: drop of the validation
  mean log-likelihood, from the same retrained models),
- ``random``: uniform random values.

Experiments (as the reference's ``dvrl_metrics``): (1) corrupted-sample discovery: the
fraction of flipped labels among the lowest-valued 5%..50% of the training set, with the
optimal curve; (2) remove high / remove low: test accuracy of a logistic regression
retrained after removing 0..50% of the highest- or lowest-valued points; (3) mean value of
flipped and clean points, detection AUC, and each method's runtime. Ties between values are
broken in a random (seeded) order. Tables: RESULTS/dvrl.md and .json; plots:
RESULTS/dvrl_discovery.png, RESULTS/dvrl_remove.png; values: RESULTS/dvrl_values.npz.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from dvrl_data import LOADERS, flip_labels  # noqa: E402

from ads.dvrl import DVRL  # noqa: E402
from ads.shapley import knn_shapley  # noqa: E402

log = logging.getLogger("bench.dvrl")

METHODS = ("dvrl", "knn_shapley", "loo", "loo_loglik", "random")
LABELS = {"dvrl": "DVRL", "knn_shapley": "KNN-Shapley", "loo": "LOO (acc)", "loo_loglik": "LOO (log-lik)",
          "random": "random"}
DATASETS = {
    # loader kwargs; DVRL settings that differ from the defaults; the features' kind
    "adult": dict(load=dict(n_train=1000, n_val=400), dvrl=dict(standardize=False), title="UCI Adult"),
    "fashion": dict(load=dict(n_train=4000, n_val=1000), dvrl=dict(batch_size=4000), title="Fashion-MNIST (CNN emb.)"),
    "sms": dict(load=dict(n_train=2000, n_val=500), dvrl=dict(), title="SMS spam (MiniLM emb.)"),
}
INSPECT = np.round(np.arange(0.05, 0.501, 0.05), 2)
REMOVE = np.round(np.arange(0.0, 0.501, 0.05), 2)

EPILOG = """\
Examples:
  python benchmarks/dvrl.py                                  # all data sets, 2000 iterations
  python benchmarks/dvrl.py --datasets adult --iterations 300
  python benchmarks/dvrl.py --seeds 0,1 --out /tmp/dvrl-results
"""


# --------------------------------------------------------------------------- leave-one-out


def loo_values(x, y, x_val, y_val, n_classes, block: int = 32):
    """Leave-one-out values: drops of validation accuracy and of mean log-likelihood.

    Exact leave-one-out retraining of the L2-regularised multinomial logistic regression
    (lam = 1, scikit-learn's C = 1), with the library's :mod:`ads.influence` (the same
    model and Woodbury-downdated Newton steps the ``loo`` valuer uses), many points at a
    time.
    """
    from ads.influence import LogisticHead, hessian, loo_params, metric_at

    head = LogisticHead().fit(x, y, n_classes)
    Hinv = np.linalg.inv(hessian(head, x))
    acc0, ll0 = metric_at(head.theta_, x_val, y_val, "accuracy"), metric_at(head.theta_, x_val, y_val, "loss")
    acc, ll = np.empty(len(y)), np.empty(len(y))
    for s in range(0, len(y), block):
        idx = np.arange(s, min(s + block, len(y)))
        thetas = loo_params(head, x, y, idx, Hinv=Hinv)
        acc[idx], ll[idx] = metric_at(thetas, x_val, y_val, "accuracy"), metric_at(thetas, x_val, y_val, "loss")
    return acc0 - acc, ll0 - ll


# --------------------------------------------------------------------------- experiments


def lowest_first(values, rng):
    """Order of the points, lowest value first; ties in a random (seeded) order."""
    return np.lexsort((rng.permutation(len(values)), values))


def discovery_curve(values, flipped, rng):
    order = lowest_first(values, rng)
    n = len(values)
    return [float(flipped[order[: int(round(f * n))]].sum() / flipped.sum()) for f in INSPECT]


def remove_curves(values, data, y_noisy, rng):
    """Test accuracy after removing the lowest / highest valued fractions (LogisticRegression)."""
    from sklearn.linear_model import LogisticRegression

    n = len(values)
    low_first = lowest_first(values, rng)
    high_first = lowest_first(-values, rng)
    out = {"remove_low": [], "remove_high": []}
    for f in REMOVE:
        k = int(round(f * n))
        for key, order in (("remove_low", low_first), ("remove_high", high_first)):
            keep = np.sort(order[k:])  # same set -> same fit, whatever the removal order
            if np.unique(y_noisy[keep]).size < 2:
                out[key].append(float("nan"))
                continue
            clf = LogisticRegression(max_iter=2000).fit(data["x_train"][keep], y_noisy[keep])
            out[key].append(float((clf.predict(data["x_test"]) == data["y_test"]).mean()))
    return out


def value_all(data, y_noisy, args, seed, cfg):
    """Values and runtimes of every method."""
    x, xv, yv, C = data["x_train"], data["x_val"], data["y_val"], data["n_classes"]
    values, runtime, extra = {}, {}, {}

    t = time.perf_counter()
    params = dict(iterations=args.iterations, inner_iterations=args.inner_iterations, random_state=seed,
                  progress=not args.no_progress)
    params.update(cfg["dvrl"])
    model = DVRL(**params).fit(x, y_noisy, xv, yv, n_classes=C)
    runtime["dvrl"] = time.perf_counter() - t
    values["dvrl"] = model.values_
    r = model.rewards_
    extra["dvrl"] = dict(params={k: v for k, v in model.__dict__.items() if not k.endswith("_") and k != "progress"},
                         baseline=model.baseline_, reward_first100=float(r[:100].mean()),
                         reward_last100=float(r[-100:].mean()), final_selection_rate=float(model.selection_rate_[-1]),
                         final_spread=float(model.spread_[-1]))
    log.info("  dvrl: %.1f s, baseline %.4f, reward %+.4f -> %+.4f", runtime["dvrl"], model.baseline_,
             extra["dvrl"]["reward_first100"], extra["dvrl"]["reward_last100"])

    t = time.perf_counter()
    values["knn_shapley"] = knn_shapley(x, y_noisy, xv, yv, k=10, n_jobs=1)
    runtime["knn_shapley"] = time.perf_counter() - t
    log.info("  knn_shapley: %.2f s", runtime["knn_shapley"])

    t = time.perf_counter()
    values["loo"], values["loo_loglik"] = loo_values(x, y_noisy, xv, yv, C)
    runtime["loo"] = runtime["loo_loglik"] = time.perf_counter() - t
    log.info("  loo: %.1f s (%d exact retrainings; %.0f%% of the points change the val accuracy)",
             runtime["loo"], len(x), 100 * np.mean(values["loo"] != 0))

    t = time.perf_counter()
    values["random"] = np.random.default_rng(seed + 1000).random(len(x))
    runtime["random"] = time.perf_counter() - t
    return values, runtime, extra


def run_dataset(name, seed, args):
    from sklearn.metrics import roc_auc_score

    cfg = DATASETS[name]
    log.info("%s (seed %d): loading", name, seed)
    data = dict(LOADERS[name](seed=seed, **cfg["load"]))
    if name != "adult":  # embeddings: standardise with the training set's statistics
        mu, sd = data["x_train"].mean(0), data["x_train"].std(0) + 1e-8
        for k in ("x_train", "x_val", "x_test"):
            data[k] = ((data[k] - mu) / sd).astype(np.float32)
    rng = np.random.default_rng(seed)
    y_noisy, flipped = flip_labels(data["y_train"], args.noise, data["n_classes"], rng)
    log.info("%s: %d train (%d flipped) / %d val / %d test, %d features, %d classes", name, len(y_noisy),
             flipped.sum(), len(data["y_val"]), len(data["y_test"]), data["x_train"].shape[1], data["n_classes"])
    values, runtime, extra = value_all(data, y_noisy, args, seed, cfg)
    res = dict(n_train=len(y_noisy), n_val=len(data["y_val"]), n_test=len(data["y_test"]),
               n_features=int(data["x_train"].shape[1]), n_classes=int(data["n_classes"]),
               n_flipped=int(flipped.sum()), source=str(data.get("source")), methods={})
    if "encoder_val_accuracy" in data:
        res["encoder_val_accuracy"] = float(data["encoder_val_accuracy"])
    for m in METHODS:
        v = values[m]
        log.info("  %s: evaluating", m)
        eval_rng = np.random.default_rng(seed + 7)
        res["methods"][m] = dict(
            runtime_s=runtime[m], mean_value_flipped=float(v[flipped].mean()), mean_value_clean=float(v[~flipped].mean()),
            std_value=float(v.std()), detection_auc=float(roc_auc_score(flipped, -v)),
            discovery=discovery_curve(v, flipped, eval_rng), **remove_curves(v, data, y_noisy, eval_rng),
        )
        if m in extra:
            res["methods"][m]["diagnostics"] = extra[m]
    res["optimal_discovery"] = [float(min(f / args.noise, 1.0)) for f in INSPECT]
    return res, values, flipped


# --------------------------------------------------------------------------- reporting


def markdown(results, args, meta=None) -> str:
    lines = ["# DVRL benchmark: corrupted-sample discovery and data removal\n",
             f"{int(args.noise * 100)}% of training labels flipped uniformly to another class; seeds "
             f"{args.seeds}; DVRL {args.iterations} outer iterations, {args.inner_iterations} inner steps; "
             f"1 thread. Generated by `benchmarks/dvrl.py` on {(meta or {}).get('date', datetime.date.today())}"
             + (f", total {meta['total_s']:.0f} s" if meta else "") + ".\n"]
    for seed, per in results.items():
        lines.append(f"\n## Seed {seed}\n")
        for name, res in per.items():
            title = DATASETS[name]["title"]
            lines.append(f"\n### {title}: {res['n_train']} train ({res['n_flipped']} flipped) / {res['n_val']} val / "
                         f"{res['n_test']} test, {res['n_features']} features, {res['n_classes']} classes\n")
            lines.append("**Corrupted-sample discovery** (fraction of flipped labels found among the lowest-valued "
                         "fraction inspected)\n")
            lines.append("| method | " + " | ".join(f"{int(f * 100)}%" for f in INSPECT) + " |")
            lines.append("|---" * (len(INSPECT) + 1) + "|")
            for m in METHODS:
                lines.append(f"| {LABELS[m]} | " + " | ".join(f"{v:.3f}" for v in res["methods"][m]["discovery"]) + " |")
            lines.append("| optimal | " + " | ".join(f"{v:.3f}" for v in res["optimal_discovery"]) + " |")
            lines.append("\n**Remove low / remove high** (test accuracy of a logistic regression retrained after "
                         "removing the lowest / highest valued fraction)\n")
            lines.append("| method | removed | " + " | ".join(f"{int(f * 100)}%" for f in REMOVE) + " |")
            lines.append("|---" * (len(REMOVE) + 2) + "|")
            for m in METHODS:
                for key, lab in (("remove_low", "low"), ("remove_high", "high")):
                    lines.append(f"| {LABELS[m]} | {lab} | " + " | ".join(f"{v:.3f}" for v in res["methods"][m][key]) + " |")
            lines.append("\n**Values and runtime**\n")
            lines.append("| method | mean value flipped | mean value clean | detection AUC | found @20% (/ 0.20 = x random's expectation) | "
                         "fractions where removing low hurts more than removing high | runtime (s) |")
            lines.append("|---|---|---|---|---|---|---|")
            for m in METHODS:
                r = res["methods"][m]
                at20 = r["discovery"][list(INSPECT).index(0.2)]
                worse = [f"{int(f * 100)}%" for f, lo, hi in zip(REMOVE, r["remove_low"], r["remove_high"]) if lo < hi]
                lines.append(f"| {LABELS[m]} | {r['mean_value_flipped']:.4g} | {r['mean_value_clean']:.4g} | "
                             f"{r['detection_auc']:.3f} | {at20:.3f} ({at20 / 0.2:.2f}x) | {', '.join(worse) or 'none'} | "
                             f"{r['runtime_s']:.2f} |")
            d = res["methods"]["dvrl"].get("diagnostics")
            if d:
                lines.append(f"\nDVRL: validation baseline {d['baseline']:.4f} ({d['params']['metric']}); mean reward "
                             f"{d['reward_first100']:+.4f} (first 100 iterations) -> {d['reward_last100']:+.4f} (last "
                             f"100); final mean selection probability {d['final_selection_rate']:.3f}, spread (std) "
                             f"{d['final_spread']:.3f}.")
    return "\n".join(lines) + "\n"


def plots(results, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = next(iter(results))
    per = results[seed]
    colors = {"dvrl": "C0", "knn_shapley": "C1", "loo": "C2", "loo_loglik": "C4", "random": "C7"}
    fig, axes = plt.subplots(1, len(per), figsize=(5 * len(per), 4.5), squeeze=False)
    for ax, (name, res) in zip(axes[0], per.items()):
        x = [0.0] + list(INSPECT)
        for m in METHODS:
            ax.plot(x, [0.0] + res["methods"][m]["discovery"], "o-", ms=3, color=colors[m], label=LABELS[m])
        ax.plot(x, [0.0] + res["optimal_discovery"], "k--", label="optimal")
        ax.set(title=DATASETS[name]["title"], xlabel="fraction inspected (lowest values first)",
               ylabel="fraction of flipped labels found", xlim=(0, 0.5), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Corrupted-sample discovery (seed {seed})")
    fig.tight_layout()
    fig.savefig(out / "dvrl_discovery.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(len(per), len(METHODS), figsize=(3.2 * len(METHODS), 2.8 * len(per)),
                             squeeze=False, sharey="row")
    for row, (name, res) in zip(axes, per.items()):
        for ax, m in zip(row, METHODS):
            ax.plot(REMOVE, res["methods"][m]["remove_low"], "o-", ms=3, color="C2", label="lowest removed")
            ax.plot(REMOVE, res["methods"][m]["remove_high"], "x--", ms=4, color="C3", label="highest removed")
            ax.set_title(f"{DATASETS[name]['title']}: {LABELS[m]}", fontsize=8)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("test accuracy")
    for ax in axes[-1]:
        ax.set_xlabel("fraction removed")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Logistic regression retrained after removing the lowest / highest valued points (seed {seed})")
    fig.tight_layout()
    fig.savefig(out / "dvrl_remove.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="adult,fashion,sms", help="comma-separated subset of adult,fashion,sms")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (data split, label flips, DVRL)")
    ap.add_argument("--iterations", type=int, default=2000, help="DVRL outer iterations")
    ap.add_argument("--inner-iterations", type=int, default=100, help="DVRL predictor steps per iteration")
    ap.add_argument("--noise", type=float, default=0.2, help="fraction of training labels flipped")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    ap.add_argument("--no-progress", action="store_true", help="no DVRL progress bar")
    ap.add_argument("--replot", action="store_true", help="only redo the table and plots from OUT/dvrl.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.replot:
        saved = json.loads((args.out / "dvrl.json").read_text())
        meta = saved["meta"]
        args.seeds, args.noise = ",".join(saved["results"]), meta["noise"]
        args.iterations, args.inner_iterations = meta["iterations"], meta["inner_iterations"]
        results = {int(k): v for k, v in saved["results"].items()}
        (args.out / "dvrl.md").write_text(markdown(results, args, meta))
        plots(results, args.out)
        return
    names = [s for s in args.datasets.split(",") if s]
    unknown = [s for s in names if s not in DATASETS]
    if unknown:
        ap.error(f"unknown data set {unknown[0]!r}; choose from {sorted(DATASETS)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)  # the machine is shared; small models are fastest on one thread
    threadpool_limits(1)
    args.out.mkdir(parents=True, exist_ok=True)
    results, arrays = {}, {}
    t0 = time.perf_counter()
    for seed in seeds:
        results[seed] = {}
        for name in names:
            res, values, flipped = run_dataset(name, seed, args)
            results[seed][name] = res
            arrays[f"{name}_seed{seed}_flipped"] = flipped
            for m, v in values.items():
                arrays[f"{name}_seed{seed}_{m}"] = v
    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), machine=platform.machine(),
                processor=platform.processor(), python=platform.python_version(), numpy=np.__version__,
                torch=torch.__version__, threads=1, total_s=time.perf_counter() - t0, noise=args.noise,
                iterations=args.iterations, inner_iterations=args.inner_iterations,
                inspect=list(INSPECT), remove=list(REMOVE), dataset_settings=DATASETS)
    tmp = args.out / "dvrl.json.tmp"
    tmp.write_text(json.dumps(dict(meta=meta, results={str(k): v for k, v in results.items()}), indent=1, default=str))
    os.replace(tmp, args.out / "dvrl.json")
    md = markdown(results, args, meta)
    (args.out / "dvrl.md.tmp").write_text(md)
    os.replace(args.out / "dvrl.md.tmp", args.out / "dvrl.md")
    np.savez_compressed(args.out / "dvrl_values.npz", **arrays)
    plots(results, args.out)
    sys.stdout.write(md)
    log.info("done in %.0f s; results in %s", time.perf_counter() - t0, args.out)


if __name__ == "__main__":
    main()
