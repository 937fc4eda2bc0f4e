"""Ablation of the logistic-utility Monte Carlo valuers' settings (TMC-Shapley, Beta Shapley)
and of Data-OOB's learner, score and head fits, on the DVRL use cases of benchmarks/valuers.py:
detection AUC of the flipped labels, share found in the lowest 20 %, seconds (one thread). Picks the defaults the benchmark compares
with the peers; writes RESULTS/valuers_ablation.md.

    python3 benchmarks/valuers_ablation.py --datasets adult --seeds 0
    python3 benchmarks/valuers_ablation.py --datasets adult --seeds 0,1,2 --only 15-29 --out /tmp/oob_adult.md
    python3 benchmarks/valuers_ablation.py --datasets fashion,sms --seeds 0,1,2 --only 15,17-20,22-29 --out /tmp/oob_fs.md
    (Data-OOB rows, RESULTS/valuers_oob_steps.md; the exact logistic heads, 16 and 21, take ~350 s a seed on Fashion)
    python3 benchmarks/valuers_ablation.py --datasets sms,adult,fashion --seeds 0,1,2 --only 23,24,64-72 \
        --out benchmarks/results/valuers_oob_pca.md   (Data-OOB trees on principal components)
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from dvrl import DATASETS  # noqa: E402
from valuers import load_case  # noqa: E402

from ads.valuers import make_valuer  # noqa: E402

#: the Monte Carlo rows value with the logistic-regression utility, prefix fits to 1e-8 unless a row says otherwise
#: (the valuers' default was 1e-8 when these rows were first run; it is 1e-3 since rows 51-55)
LOG = {"utility": "logistic", "fit_tol": 1e-8}


def capped(perms: int, positions: int, fit_tol: str | None = None):
    """A log-likelihood TMC row of one chain of ``perms`` permutations scanned to ``positions``
    (``fit_tol`` as written in the label, e.g. "1e-3"; else LOG's)."""
    label = f"log-lik, 1 chain, {perms} perm., {positions} positions" + (f", fit_tol {fit_tol}" if fit_tol else "")
    params = dict(LOG, n_chains=1, max_permutations=perms, max_positions=positions)
    if fit_tol:
        params["fit_tol"] = float(fit_tol)
    return ("tmc-shapley", label, params)


#: Data-OOB: the paper's setting, and bagged logistic heads with the paper's 0/1 score
PAPER = {"learner": "tree", "max_depth": None, "score": "accuracy", "n_estimators": 200}
HEADS = {"learner": "logistic", "score": "accuracy", "n_estimators": 200}
CONFIGS = [
    ("tmc-shapley", "accuracy, 20 perm., trunc. 0.01 (old benchmark row)", dict(LOG, metric="accuracy", max_permutations=20)),
    ("tmc-shapley", "log-lik, 20 perm., trunc. 0.01", dict(LOG, metric="loss", max_permutations=20)),
    ("tmc-shapley", "accuracy, 100 perm., trunc. 0.01", dict(LOG, metric="accuracy", max_permutations=100)),
    ("tmc-shapley", "log-lik, 100 perm., trunc. 0.01", dict(LOG, metric="loss", max_permutations=100)),
    ("tmc-shapley", "log-lik, 100 perm., trunc. 0.05", dict(LOG, metric="loss", max_permutations=100, truncation=0.05)),
    ("tmc-shapley", "log-lik, Gelman-Rubin 1.05, 100..300 perm.", dict(LOG, metric="loss", convergence="gelman-rubin",
                                                                       max_permutations=300)),
    ("beta-shapley", "accuracy, 20 perm., all positions (old benchmark row)", dict(LOG, metric="accuracy", max_permutations=20)),
    ("beta-shapley", "accuracy, 20 perm., weight_tol 1e-3", dict(LOG, metric="accuracy", max_permutations=20, weight_tol=1e-3)),
    ("beta-shapley", "log-lik, 20 perm., weight_tol 1e-3", dict(LOG, metric="loss", max_permutations=20, weight_tol=1e-3)),
    ("beta-shapley", "accuracy, 100 perm., weight_tol 1e-3", dict(LOG, metric="accuracy", max_permutations=100, weight_tol=1e-3)),
    ("beta-shapley", "log-lik, 100 perm., weight_tol 1e-3", dict(LOG, metric="loss", max_permutations=100, weight_tol=1e-3)),
    ("beta-shapley", "log-lik, 20 perm., weight_tol 1e-2", dict(LOG, metric="loss", max_permutations=20, weight_tol=1e-2)),
    ("beta-shapley", "log-lik, 10 perm., weight_tol 1e-2", dict(LOG, metric="loss", max_permutations=10, weight_tol=1e-2)),
    ("beta-shapley", "accuracy, 20 perm., weight_tol 1e-2", dict(LOG, metric="accuracy", max_permutations=20,
                                                                 weight_tol=1e-2)),
    ("data-oob", "CART trees, 200, full depth, 0/1 score (the paper's)", dict(PAPER)),
    ("data-oob", "logistic heads, 200, exact fits", dict(HEADS)),
    ("data-oob", "logistic heads, 200, 1 chord step (one-step approximation)", dict(HEADS, steps=1)),
    ("data-oob", "logistic heads, 200, 2 chord steps", dict(HEADS, steps=2)),
    ("data-oob", "logistic heads, 200, 3 chord steps", dict(HEADS, steps=3)),
    ("data-oob", "CART trees, 200, full depth, score p(y|x)", dict(PAPER, score="proba")),
    ("data-oob", "logistic heads, 200, exact fits, score p(y|x)", dict(HEADS, score="proba")),
    ("data-oob", "logistic heads, 200, 1 chord step, score p(y|x)", dict(HEADS, steps=1, score="proba")),
    ("data-oob", "extra trees, 50, depth 8, score p(y|x) (the default)", {}),
    ("data-oob", "extra trees, 100, depth 8, score p(y|x)", dict(n_estimators=100)),
    ("data-oob", "extra trees, 200, depth 8, score p(y|x)", dict(n_estimators=200)),
    ("data-oob", "extra trees, 50, depth 8, 0/1 score", dict(score="accuracy")),
    ("data-oob", "extra trees, 50, full depth, score p(y|x)", dict(max_depth=None)),
    ("data-oob", "CART trees, 50, depth 8, score p(y|x)", dict(learner="tree")),
    ("data-oob", "CART trees, 200, depth 8, score p(y|x)", dict(learner="tree", n_estimators=200)),
    # small budgets: how few permutations keep the detection of a peer that truncates early
    ("tmc-shapley", "log-lik, 1 chain, 1 perm., trunc. 0.01", dict(LOG, metric="loss", n_chains=1, max_permutations=1)),
    ("tmc-shapley", "log-lik, 1 chain, 1 perm., trunc. 0.05", dict(LOG, metric="loss", n_chains=1, max_permutations=1,
                                                                   truncation=0.05)),
    ("tmc-shapley", "log-lik, 1 chain, 2 perm., trunc. 0.05", dict(LOG, metric="loss", n_chains=1, max_permutations=2,
                                                                   truncation=0.05)),
    ("tmc-shapley", "log-lik, 1 chain, 1 perm., trunc. 0.1", dict(LOG, metric="loss", n_chains=1, max_permutations=1,
                                                                  truncation=0.1)),
    ("tmc-shapley", "log-lik, 1 chain, 4 perm., trunc. 0.1", dict(LOG, metric="loss", n_chains=1, max_permutations=4,
                                                                  truncation=0.1)),
    ("tmc-shapley", "accuracy, 1 chain, 1 perm., trunc. 0.01", dict(LOG, metric="accuracy", n_chains=1,
                                                                    max_permutations=1)),
    # position caps (max_positions): a fixed budget of refits per permutation, small prefixes only
    *[capped(p, m) for p, m in [(10, 100), (5, 100), (10, 50), (20, 50), (20, 25), (40, 25), (10, 200), (5, 400)]],
    ("tmc-shapley", "accuracy, 1 chain, 10 perm., 100 positions", dict(LOG, metric="accuracy", n_chains=1, max_permutations=10,
                                                                       max_positions=100)),
    *[capped(p, m) for p, m in [(2, 400), (1, 400), (5, 200), (3, 200), (2, 200), (3, 100)]],
    # looser prefix fits (fit_tol, LogisticHead's step tolerance; default 1e-8)
    ("tmc-shapley", "log-lik, 10 perm., fit_tol 1e-3", dict(LOG, max_permutations=10, fit_tol=1e-3)),
    *[capped(p, m, "1e-3") for p, m in [(10, 200), (10, 100), (20, 200)]],
    ("tmc-shapley", "log-lik, 10 perm. (the default row)", dict(LOG, max_permutations=10)),
    # Data-OOB: more and deeper trees (SMS, where pyDVL's 200-tree forest scores 0.976-0.983)
    ("data-oob", "extra trees, 400, depth 8, score p(y|x)", dict(n_estimators=400)),
    ("data-oob", "extra trees, 200, depth 12, score p(y|x)", dict(n_estimators=200, max_depth=12)),
    ("data-oob", "extra trees, 200, depth 16, score p(y|x)", dict(n_estimators=200, max_depth=16)),
    ("data-oob", "CART trees, 100, depth 8, score p(y|x)", dict(learner="tree", n_estimators=100)),
    ("data-oob", "extra trees, 100, depth 12, score p(y|x)", dict(n_estimators=100, max_depth=12)),
    ("data-oob", "extra trees, 150, depth 12, score p(y|x)", dict(n_estimators=150, max_depth=12)),
    ("data-oob", "extra trees, 200, depth 10, score p(y|x)", dict(n_estimators=200, max_depth=10)),
    ("data-oob", "extra trees, 300, depth 10, score p(y|x)", dict(n_estimators=300, max_depth=10)),
    # Data-OOB: trees on the top-k principal components (n_components) instead of the coordinates
    *[("data-oob", f"extra trees, 50, depth 8, score p(y|x), {k} PCs", dict(n_components=k)) for k in (8, 16, 32, 64)],
    ("data-oob", "extra trees, 100, depth 8, score p(y|x), 16 PCs", dict(n_estimators=100, n_components=16)),
    ("data-oob", "extra trees, 100, depth 10, score p(y|x), 16 PCs", dict(n_estimators=100, max_depth=10, n_components=16)),
    ("data-oob", "extra trees, 200, depth 8, score p(y|x), 16 PCs", dict(n_estimators=200, n_components=16)),
    ("data-oob", "extra trees, 50, depth 8, score p(y|x), auto (coordinates or 16 PCs)", dict(n_components="auto")),
    ("data-oob", "extra trees, 100, depth 8, score p(y|x), auto (coordinates or 16 PCs)",
     dict(n_estimators=100, n_components="auto")),
]


def main(argv=None):
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="adult")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--only", default="", help="config numbers (1-based) to run, e.g. 1,3,15-29")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "valuers_ablation.md")
    args = ap.parse_args(argv)
    threadpool_limits(1)
    only = set()
    for part in filter(None, args.only.split(",")):
        lo, _, hi = part.partition("-")
        only.update(range(int(lo), int(hi or lo) + 1))
    load = os.getloadavg()
    lines = ["# Logistic-utility Monte Carlo valuers: ablation\n",
             f"`python3 benchmarks/valuers_ablation.py --datasets {args.datasets} --seeds {args.seeds}"
             + (f" --only {args.only}" if args.only else "") + f"` on {datetime.datetime.now().isoformat(timespec='seconds')}, "
             f"one thread, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. 20 % flipped labels; "
             "AUC = detection AUC of the flipped labels (lowest values first), found = share of flipped among the lowest 20 %. "
             "Utility: L2 logistic regression (lam = 1) trained on each prefix (fits to fit_tol 1e-8 unless stated), validation accuracy or mean log-likelihood; "
             "chains 4, batch 16, min_permutations 100 (so a max below it is the count). Data-OOB needs no validation set.\n"]
    for name in args.datasets.split(","):
        lines += [f"\n## {DATASETS[name]['title']}\n", "| # | method | setting | seeds | AUC | found 20 % | seconds | permutations |",
                  "|---|---|---|---|---|---|---|---|"]
        datas = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            datas.append((seed, *load_case(name, seed, 0.2)))
        for i, (method, label, params) in enumerate(CONFIGS, 1):
            if only and i not in only:
                continue
            res = []
            for seed, data, y, flipped in datas:
                t = time.perf_counter()
                v = make_valuer(method, progress=False, **params).fit(
                    data["x_train"], y, data["x_val"], data["y_val"], n_classes=data["n_classes"], random_state=seed)
                s = time.perf_counter() - t
                low = np.argsort(v.values_, kind="stable")[: int(0.2 * len(y))]
                res.append((roc_auc_score(flipped, -v.values_), flipped[low].sum() / flipped.sum(), s,
                            getattr(v, "n_permutations_", np.nan)))
                print(f"{name} seed {seed} #{i} {method} {label}: AUC {res[-1][0]:.3f} {s:.1f} s", file=sys.stderr, flush=True)
            a = np.array(res)
            lines.append(f"| {i} | {method} | {label} | {len(res)} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.3f} | "
                         f"{a[:, 2].mean():.2f} | {'' if np.isnan(a[0, 3]) else f'{a[:, 3].mean():.0f}'} |")
            args.out.write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
