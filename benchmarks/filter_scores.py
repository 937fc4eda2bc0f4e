"""Round-0 diagnostics of the pool scores on a cheap pool (issue 10's "what we know").

Trains the round-0 network once on the clean labeled set, scores the whole pool with each
scorer, and reports per scorer: AUROC of in-task (clean/corrupted/shifted) above off-task,
the off-task share of the top 10 %, and the class balance of the top 10 % (largest and
smallest predicted-class share). Not a test.

    python benchmarks/filter_scores.py --data benchmarks/runs/effectiveness/data-cheap-reject-...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ads.datasets.cheap import coarse_source  # noqa: E402
from ads.embed import EmbedConfig, embed_stores  # noqa: E402
from ads.score import make_scorer  # noqa: E402
from ads.select import score_pool  # noqa: E402
from ads.task import load_task  # noqa: E402

SCORERS = {
    "knn-shapley max (paper)": ("knn-shapley", {"aggregate": "max"}),
    "knn-shapley mean": ("knn-shapley", {"aggregate": "mean"}),
    "knn-shapley weighted": ("knn-shapley", {"aggregate": "weighted"}),
    "direct expected": ("direct", {"aggregate": "expected"}),
    "direct max": ("direct", {"aggregate": "max"}),
    "direct mean": ("direct", {"aggregate": "mean"}),
}


def auroc(pos, neg):
    """P(score of a positive > score of a negative), ties counted half."""
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "filter_scores.json")
    args = ap.parse_args(argv)
    task = load_task(args.data / "pool.zarr", args.data / "labeled.zarr", args.data / "val.zarr", seed=args.seed)
    em = embed_stores(task, task.pool, EmbedConfig(arch="cnn", epochs=args.epochs, seed=args.seed), progress=False)
    src = np.array([coarse_source(t) for t in task.pool.hidden("source")])
    off = src == "off-task"
    pred = np.asarray(em.proba_pool).argmax(1)
    n_top = int(np.ceil(0.1 * len(src)))
    rows, out = [], {}
    for name, (scorer, params) in SCORERS.items():
        s = score_pool(make_scorer(scorer, **params), em, task.data, task.n_classes, seed=args.seed)
        top = np.argsort(-s, kind="stable")[:n_top]
        shares = np.bincount(pred[top], minlength=task.n_classes) / n_top
        res = {"auroc_in_vs_off": auroc(s[~off], s[off]), "off_task_in_top10": float(off[top].mean()),
               "largest_class_top10": float(shares.max()), "smallest_class_top10": float(shares.min()),
               "by_source_top10": {t: float((src[top] == t).mean()) for t in sorted(set(src))}}
        out[name] = res
        rows.append(f"| {name} | {res['auroc_in_vs_off']:.3f} | {res['off_task_in_top10'] * 100:.1f} % | "
                    f"{res['largest_class_top10'] * 100:.0f} % / {res['smallest_class_top10'] * 100:.0f} % |")
    # plain out-of-distribution signals, for comparison (not scorers of ads)
    import faiss

    index = faiss.IndexFlatL2(em.emb.shape[1])
    index.add(np.ascontiguousarray(em.emb, dtype=np.float32))
    dist, _ = index.search(np.ascontiguousarray(np.asarray(em.emb_pool), dtype=np.float32), 10)
    signals = {"max softmax p (Hendrycks & Gimpel)": np.asarray(em.proba_pool).max(1),
               "- distance to 10th nearest labeled": -dist[:, -1]}
    for name, s in signals.items():
        top = np.argsort(-s, kind="stable")[:n_top]
        shares = np.bincount(pred[top], minlength=task.n_classes) / n_top
        res = {"auroc_in_vs_off": auroc(s[~off], s[off]), "off_task_in_top10": float(off[top].mean()),
               "largest_class_top10": float(shares.max()), "smallest_class_top10": float(shares.min())}
        out[name] = res
        rows.append(f"| {name} | {res['auroc_in_vs_off']:.3f} | {res['off_task_in_top10'] * 100:.1f} % | "
                    f"{res['largest_class_top10'] * 100:.0f} % / {res['smallest_class_top10'] * 100:.0f} % |")
    # AUROC of each signal per in-task source against off-task
    by_src = {}
    for name, s in {**signals, "direct expected": score_pool(make_scorer("direct"), em, task.data, task.n_classes)}.items():
        by_src[name] = {t: auroc(s[src == t], s[off]) for t in sorted(set(src)) if t != "off-task"}
    out["auroc_by_source"] = by_src
    print(f"pool {len(src)} ({off.mean() * 100:.1f} % off-task), validation accuracy {em.val_accuracy:.4f}\n")
    print("AUROC of each in-task source against off-task:", json.dumps(by_src, indent=1))
    print("| scorer | AUROC in-task > off-task | off-task in top 10 % | largest / smallest class in top 10 % |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data), "seed": args.seed, "results": out}, indent=1))


if __name__ == "__main__":
    main()
