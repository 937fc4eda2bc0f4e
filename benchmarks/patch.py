"""PUMA patching of the logistic-regression head (ads.patch) against no change, retraining
without the points and plain influence removal, on the two experiments of the PUMA paper.

1. MNIST: remove a K-means style cluster of one digit ("4": the smallest of 4 K-means
   clusters of the training 4s). Embeddings: PCA-50 of the pixels, fitted on 10,000 other
   MNIST training images (a frozen backbone that never saw the removed points). Reported:
   accuracy on the removed training points, on test 4s of that style (nearest of the four
   centroids), on the other test 4s and on the other test digits.
2. Flipped labels: 10 % of the training labels flipped on two-moons (sklearn, noise 0.25;
   embeddings: 200 random Fourier features, gamma 2) and on Fashion-MNIST (128-d
   embeddings of our CNN trained on 10,000 clean images disjoint from the rest,
   benchmarks/dvrl_data.py). The lowest-valued 10 % by the influence valuer (validation
   loss, clean validation set) are removed. Reported: test accuracy, expected calibration
   error (15 bins), the share of removed points that were flipped.

Methods: none (the original head), retrain (LogisticHead refitted without the points,
from scratch; its warm-started time too), influence (theta + sum_k phi_k, no
compensation, eta = 1), puma (metric C = accuracy surrogate on the remaining training
points, delta = 0.01; ece: the calibration surrogate), both also in 8 re-linearised steps
(``steps=8``; experiment 1 also 32), and, for flipped labels, puma with C on the clean validation set. |dC| is the measured change of C on
the remaining training points. Seconds: one patch (values not included) vs one retraining.

3. ``--loop``: ``ads loop`` on a cheap MNIST pool (``ads data cheap-mnist``: mislabeled and
   off-task items with wrong labels among the bought ones), 3 rounds, with and without
   ``--patch-lowest P``: test accuracy per round (the patched head's with the option, the
   network's without), and the share of the patched-out labels that were bad (mislabeled
   or off-task) against the share among all bought labels. Writes patch_loop.md / .json.

Run: python benchmarks/patch.py [--seeds 3]; writes benchmarks/results/patch.md and .json.
     python benchmarks/patch.py --loop [--seeds 2] [--patch 5,10]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ads import influence as inf  # noqa: E402
from ads.patch import expected_calibration_error, metric_value, puma  # noqa: E402

log = logging.getLogger("bench.patch")
RESULTS = Path(__file__).resolve().parent / "results"
LAM = 1.0
DELTA = 0.01
STEPS = 8
#: experiment 1 also runs PUMA in this many steps: how close re-linearising gets to retraining
STEPS_LONG = 32


def _acc(theta, X, y):
    return float((inf._proba(inf._augment(X), theta).argmax(1) == y).mean()) if len(y) else float("nan")


def _ece(theta, X, y):
    return expected_calibration_error(inf._proba(inf._augment(X), theta), y)


def _methods(head, X, y, rows, C, val=None, long_steps=False):
    """theta of every method, the seconds it took and the measured |dC| on the remaining points."""
    keep = np.setdiff1d(np.arange(len(y)), rows)
    out = {"none": (head.theta_, 0.0, None)}
    t = time.perf_counter()
    th = inf.LogisticHead(lam=LAM).fit(X[keep], y[keep], C).theta_
    out["retrain"] = (th, time.perf_counter() - t, None)
    t = time.perf_counter()
    inf.LogisticHead(lam=LAM).fit(X[keep], y[keep], C, theta0=head.theta_)
    warm = time.perf_counter() - t
    r = puma(head, X, y, rows, metric="accuracy", compensate=False, line_search=False)
    out["influence"] = (r.theta, r.seconds, r)
    r = puma(head, X, y, rows, metric="accuracy", delta=DELTA)
    out["puma"] = (r.theta, r.seconds, r)
    r = puma(head, X, y, rows, metric="ece", delta=DELTA)
    out["puma, C = ece"] = (r.theta, r.seconds, r)
    r = puma(head, X, y, rows, metric="accuracy", compensate=False, line_search=False, steps=STEPS)
    out[f"influence, {STEPS} steps"] = (r.theta, r.seconds, r)
    r = puma(head, X, y, rows, metric="accuracy", delta=DELTA, steps=STEPS)
    out[f"puma, {STEPS} steps"] = (r.theta, r.seconds, r)
    if long_steps:
        r = puma(head, X, y, rows, metric="accuracy", delta=DELTA, steps=STEPS_LONG)
        out[f"puma, {STEPS_LONG} steps"] = (r.theta, r.seconds, r)
    if val is not None:
        r = puma(head, X, y, rows, metric="accuracy", delta=DELTA, X_eval=val[0], y_eval=val[1])
        out["puma, C on validation"] = (r.theta, r.seconds, r)
    c0 = metric_value(head.theta_, X[keep], y[keep], "accuracy")
    dC = {m: abs(metric_value(th, X[keep], y[keep], "accuracy") - c0) for m, (th, _, _) in out.items()}
    return out, warm, dC


# --------------------------------------------------------------------------- data
def _mnist_embeddings(seed):
    from sklearn.decomposition import PCA

    from ads.datasets.mnist import load_mnist

    d = load_mnist()
    xtr, ytr = d["train"]
    xte, yte = d["test"]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ytr))
    enc, tr = perm[:10000], perm[10000:20000]
    pca = PCA(50, random_state=seed).fit(xtr[enc].reshape(len(enc), -1) / 255.0)

    def f(x):
        return pca.transform(x.reshape(len(x), -1) / 255.0)

    return f(xtr[tr]), ytr[tr], f(xte), yte


def experiment_cluster(seed):
    from sklearn.cluster import KMeans

    X, y, Xt, yt = _mnist_embeddings(seed)
    fours = np.flatnonzero(y == 4)
    km = KMeans(4, n_init=4, random_state=seed).fit(X[fours])
    sizes = np.bincount(km.labels_, minlength=4)
    k = int(np.argmin(sizes))
    rows = fours[km.labels_ == k]
    t4 = np.flatnonzero(yt == 4)
    style = t4[km.predict(Xt[t4]) == k]
    other4 = np.setdiff1d(t4, style)
    others = np.flatnonzero(yt != 4)
    head = inf.LogisticHead(lam=LAM).fit(X, y, 10)
    res, warm, dC = _methods(head, X, y, rows, 10, long_steps=True)
    table = {}
    for m, (th, secs, r) in res.items():
        table[m] = {"removed_train": _acc(th, X[rows], y[rows]), "test_4_style": _acc(th, Xt[style], yt[style]),
                    "test_4_other": _acc(th, Xt[other4], yt[other4]), "test_other_digits": _acc(th, Xt[others], yt[others]),
                    "test": _acc(th, Xt, yt), "dC": dC[m], "seconds": secs,
                    "eta": None if r is None else r.eta, "n_compensating": None if r is None else r.n_compensating}
    return {"n_train": len(y), "n_removed": int(rows.size), "n_test_style": int(style.size), "retrain_warm_seconds": warm,
            "methods": table}


def _moons(seed):
    from sklearn.datasets import make_moons

    Xa, ya = make_moons(1000 + 300 + 2000, noise=0.25, random_state=seed)
    rng = np.random.default_rng(seed)
    W = rng.normal(0, np.sqrt(2 * 2.0), (2, 200))
    b = rng.uniform(0, 2 * np.pi, 200)
    F = np.sqrt(2 / 200) * np.cos(Xa @ W + b)
    return F[:1000], ya[:1000], F[1000:1300], ya[1000:1300], F[1300:], ya[1300:], 2


def _fashion(seed):
    from dvrl_data import load_fashion

    d = load_fashion(n_train=4000, n_val=1000, n_test=5000, seed=0)
    return (d["x_train"].astype(np.float64), d["y_train"], d["x_val"].astype(np.float64), d["y_val"],
            d["x_test"].astype(np.float64), d["y_test"], 10)


def experiment_noise(name, seed):
    from dvrl_data import flip_labels

    from ads.valuers import InfluenceValuer

    X, y_clean, Xv, yv, Xt, yt, C = _moons(seed) if name == "two-moons" else _fashion(seed)
    rng = np.random.default_rng(1000 + seed)
    y, flipped = flip_labels(y_clean, 0.1, C, rng)
    t = time.perf_counter()
    v = InfluenceValuer(lam=LAM).fit(X, y, Xv, yv, n_classes=C).values_
    value_secs = time.perf_counter() - t
    rows = np.argsort(v, kind="stable")[: int(0.1 * len(y))]
    head = inf.LogisticHead(lam=LAM).fit(X, y, C)
    res, warm, dC = _methods(head, X, y, rows, C, val=(Xv, yv))
    table = {m: {"test": _acc(th, Xt, yt), "ece": _ece(th, Xt, yt), "dC": dC[m], "seconds": secs,
                 "eta": None if r is None else r.eta, "n_compensating": None if r is None else r.n_compensating}
             for m, (th, secs, r) in res.items()}
    return {"n_train": len(y), "n_removed": int(rows.size), "flipped_share_of_removed": float(flipped[rows].mean()),
            "value_seconds": value_secs, "retrain_warm_seconds": warm, "methods": table}


# --------------------------------------------------------------------------- report
def _mean(runs, *keys):
    vals = [r for r in runs]
    for k in keys:
        vals = [v[k] for v in vals]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _fmt(v, digits=4):
    return "n/a" if v is None else f"{v:.{digits}f}"


def markdown(results, seeds):
    lines = [f"# PUMA patching of the logistic head (benchmarks/patch.py), mean of {len(seeds)} seeds", "",
             f"{results['machine']}; {results['date']}. lam = {LAM}, delta = {DELTA} on the accuracy surrogate "
             "(mean true-class probability) of the remaining training points; |dC| = measured change of it.", ""]
    runs = results["cluster"]
    lines += ["## 1. MNIST, remove the smallest K-means style cluster of the training 4s (PCA-50 embeddings)", "",
              f"{_mean(runs, 'n_removed'):.0f} of {runs[0]['n_train']} training points removed; "
              f"{_mean(runs, 'n_test_style'):.0f} test 4s of that style. Retraining warm-started from the original: "
              f"{_mean(runs, 'retrain_warm_seconds'):.3f} s.", "",
              "| method | removed (train) | test 4s, that style | other test 4s | other test digits | test | abs(dC) | eta | re-weighted | seconds |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for m in runs[0]["methods"]:
        g = lambda k, runs=runs, m=m: _mean(runs, "methods", m, k)  # noqa: E731
        lines.append(f"| {m} | {_fmt(g('removed_train'))} | {_fmt(g('test_4_style'))} | {_fmt(g('test_4_other'))} | "
                     f"{_fmt(g('test_other_digits'))} | {_fmt(g('test'))} | {_fmt(g('dC'), 5)} | {_fmt(g('eta'), 3)} | "
                     f"{_fmt(g('n_compensating'), 1)} | {_fmt(g('seconds'), 3)} |")
    for name in ("two-moons", "fashion-mnist"):
        runs = results[name]
        lines += ["", f"## 2. {name}: 10 % flipped labels, remove the lowest-valued 10 % (influence valuer)", "",
                  f"{_mean(runs, 'n_removed'):.0f} of {runs[0]['n_train']} removed, of which "
                  f"{100 * _mean(runs, 'flipped_share_of_removed'):.1f} % flipped; valuing took "
                  f"{_mean(runs, 'value_seconds'):.3f} s; warm-started retraining {_mean(runs, 'retrain_warm_seconds'):.3f} s.",
                  "", "| method | test accuracy | test ECE | abs(dC) | eta | re-weighted | seconds |", "|---|---|---|---|---|---|---|"]
        for m in runs[0]["methods"]:
            g = lambda k, runs=runs, m=m: _mean(runs, "methods", m, k)  # noqa: E731
            lines.append(f"| {m} | {_fmt(g('test'))} | {_fmt(g('ece'))} | {_fmt(g('dC'), 5)} | {_fmt(g('eta'), 3)} | "
                         f"{_fmt(g('n_compensating'), 1)} | {_fmt(g('seconds'), 3)} |")
    return "\n".join(lines) + "\n"


BAD = ("mislabeled", "off-task")


def loop_experiment(args, seeds):
    """ads loop with and without --patch-lowest on a cheap MNIST pool (experiment 3)."""
    import os
    import subprocess
    import tempfile

    from ads.datasets.cheap import coarse_source
    from ads.pool import open_pool

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    settings = [None, *args.patch]
    rows = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            d = tmp / "d"
            subprocess.run([sys.executable, "-m", "cli", "data", "cheap-mnist", str(d), "--pool", str(args.loop_pool),
                            "--test", "2000", "--seed", str(seed), "-q"], check=True, cwd=root, env=env)
            pool = open_pool(d / "pool.zarr")
            source = dict(zip(pool.ids(), (coarse_source(t) for t in pool.hidden("source"))))
            for p in settings:
                wd = tmp / f"run-{p}"
                t = time.perf_counter()
                subprocess.run([sys.executable, "-m", "cli", "loop", "--workdir", str(wd), "--pool", str(d / "pool.zarr"),
                                "--labeled", str(d / "labeled.zarr"), "--val", str(d / "val.zarr"), "--test", str(d / "test.zarr"),
                                "--rounds", "3", "--budget", str(args.loop_budget), "--seed", str(seed), "-q",
                                *(["--patch-lowest", f"{p}%"] if p else [])], check=True, cwd=root, env=env)
                secs = time.perf_counter() - t
                recs = [json.loads(x) for x in (wd / "rounds.jsonl").read_text().splitlines() if x.strip()]
                bought = [i for r in recs for i in r["picked"]]
                row = {"seed": seed, "patch_lowest": p, "seconds": secs, "test_accuracy": [r["test_accuracy"] for r in recs],
                       "bad_share_bought": float(np.mean([source[i] in BAD for i in bought])) if bought else None}
                if p:
                    last = recs[-1]["patch"]
                    removed_bought = [i for i in last["removed"] if i in source]
                    row.update(network_test_accuracy=[r["patch"].get("network_test_accuracy") for r in recs],
                               head_test_accuracy_before=[r["patch"].get("head_test_accuracy_before") for r in recs],
                               n_removed_last=last["n_removed"], removed_bought_last=len(removed_bought),
                               bad_share_removed_bought=float(np.mean([source[i] in BAD for i in removed_bought]))
                               if removed_bought else None,
                               patch_seconds=[r["patch"]["seconds"] for r in recs], eta=[r["patch"]["eta"] for r in recs])
                rows.append(row)
                log.info("loop seed %d, patch-lowest %s: test accuracy %s (%.0f s)", seed, p,
                         [round(a, 4) for a in row["test_accuracy"]], secs)
    return rows


def loop_markdown(results) -> str:
    rows = results["rows"]
    lines = [f"# ads loop with --patch-lowest (benchmarks/patch.py --loop), seeds {results['seeds']}", "",
             f"{results['machine']}; {results['date']}. `ads data cheap-mnist --pool {results['pool']} --test 2000` "
             f"(clean labeled 1000, val 500; pool with 10 % mislabeled and 15 % off-task items labeled at random), "
             f"`ads loop --rounds 3 --budget {results['budget']}` (default CNN, coreset, direct scorer). Test accuracy per round "
             "(rounds 0-3, mean over seeds); with --patch-lowest it is the patched head's; 'bad' = mislabeled or off-task.", "",
             "| --patch-lowest | test accuracy by round | final vs off | network's own head, final | unpatched logistic head, final | "
             "bad share: removed bought labels (last round) / all bought | eta (mean) | patch s / round | run s |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = None
    for p in [None, *results["patch"]]:
        rs = [r for r in rows if r["patch_lowest"] == p]
        acc = np.mean([r["test_accuracy"] for r in rs], axis=0)
        if p is None:
            base = acc[-1]
            lines.append(f"| off | {', '.join(f'{a:.4f}' for a in acc)} | 1.000 | {acc[-1]:.4f} | n/a | n/a / "
                         f"{np.mean([r['bad_share_bought'] for r in rs]):.3f} | n/a | n/a | {np.mean([r['seconds'] for r in rs]):.0f} |")
            continue
        bad = [r["bad_share_removed_bought"] for r in rs if r["bad_share_removed_bought"] is not None]
        lines.append(f"| {p} % | {', '.join(f'{a:.4f}' for a in acc)} | {acc[-1] / base:.3f} | "
                     f"{np.mean([r['network_test_accuracy'][-1] for r in rs]):.4f} | "
                     f"{np.mean([r['head_test_accuracy_before'][-1] for r in rs]):.4f} | "
                     f"{np.mean(bad) if bad else float('nan'):.3f} / {np.mean([r['bad_share_bought'] for r in rs]):.3f} | "
                     f"{np.mean([np.mean(r['eta']) for r in rs]):.3f} | {np.mean([np.mean(r['patch_seconds']) for r in rs]):.2f} | "
                     f"{np.mean([r['seconds'] for r in rs]):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--loop", action="store_true", help="experiment 3 only: ads loop with and without --patch-lowest")
    ap.add_argument("--patch", default="5,10", help="--loop: the --patch-lowest percentages to compare with off")
    ap.add_argument("--loop-pool", type=int, default=6000)
    ap.add_argument("--loop-budget", type=int, default=200)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    seeds = list(range(args.seeds))
    if args.loop:
        args.patch = [float(p) for p in args.patch.split(",") if p]
        results = {"machine": f"{platform.machine()}, {platform.python_version()}, numpy {np.__version__}",
                   "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seeds": seeds,
                   "pool": args.loop_pool, "budget": args.loop_budget, "patch": args.patch}
        results["rows"] = loop_experiment(args, seeds)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "patch_loop.json").write_text(json.dumps(results, indent=1))
        md = loop_markdown(results)
        (args.out / "patch_loop.md").write_text(md)
        print(md)
        return
    results = {"machine": f"{platform.machine()}, {platform.python_version()}, numpy {np.__version__}",
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seeds": seeds}
    for key, fn in (("cluster", experiment_cluster), ("two-moons", lambda s: experiment_noise("two-moons", s)),
                    ("fashion-mnist", lambda s: experiment_noise("fashion-mnist", s))):
        results[key] = []
        for s in seeds:
            t = time.perf_counter()
            results[key].append(fn(s))
            log.info("%s seed %d: %.1f s", key, s, time.perf_counter() - t)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "patch.json").write_text(json.dumps(results, indent=1))
    md = markdown(results, seeds)
    (args.out / "patch.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
