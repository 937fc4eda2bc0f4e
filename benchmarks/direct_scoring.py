"""Time the direct scorer against today's scoring (issue 10), same data, same run.

Scoring a pool = fit the scorer on the labeled + validation embeddings, then score every
pool point block by block, as ``ads.select.score_pool`` does:

- ``knn-shapley`` (the paper's recipe): exact KNN-Shapley values of the labeled points,
  10 per-class kNN value regressors (FAISS), max over the top-10 classes;
- ``direct``: the closed-form value of (x, c) appended to the labeled set, expected over
  p(c|x) (no regression).

Data: efficiency.py's synthetic clustered embeddings (default 500k x 128, labeled 5,000,
validation 500). Each scorer runs in a fresh process (peak RSS measured there). Table on
stdout and in RESULTS/direct_scoring.{md,json}.

    python benchmarks/direct_scoring.py --size 500000 --dim 128
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def worker(data_dir: str, scorer: str) -> dict:
    import resource

    import faiss  # noqa: F401
    import torch  # noqa: F401

    from ads.embed import Embeddings
    from ads.score import make_scorer
    from ads.select import score_pool
    from ads.task import LabeledData

    d = Path(data_dir)
    load = lambda n: np.load(d / f"{n}.npy")  # noqa: E731
    pool, xl, yl, xv, yv, proba = (load(n) for n in ("pool", "xl", "yl", "xv", "yv", "proba"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    em = Embeddings(xl, xv, pool, proba, 0.0, "synthetic", False)
    data = LabeledData(xl, yl, np.arange(len(yl)).astype(str), xv, yv, "synthetic")
    seconds = {}
    t = time.perf_counter()
    s = score_pool(make_scorer(scorer), em, data, proba.shape[1], seconds=seconds)
    total = time.perf_counter() - t
    truth = load("pool_truth")
    top = np.argsort(-s, kind="stable")[: int(0.1 * len(s))]
    return {"scorer": scorer, "total_s": total, **{f"{k}_s": v for k, v in seconds.items()},
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mib": before / 1024, "junk_share_top10": float(np.mean(truth[top] < 0)),
            "junk_share_pool": float(np.mean(truth < 0))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=500_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--labeled", type=int, default=5000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--worker", nargs=2, metavar=("DATA", "SCORER"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    from efficiency import make_data, save_data

    folder = HERE / "runs" / "direct_scoring" / f"{args.size}x{args.dim}-l{args.labeled}-v{args.val}-s{args.seed}"
    if not (folder / "pool.npy").exists():
        save_data(make_data(args.size, args.dim, n_labeled=args.labeled, n_val=args.val, seed=args.seed), folder)
    rows = []
    for scorer in ("knn-shapley", "direct"):  # one after another, each in a fresh process
        out = subprocess.run([sys.executable, __file__, "--worker", str(folder), scorer], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    base = rows[0]["total_s"]
    md = [f"# Scoring the pool: direct vs KNN-Shapley regressors ({time.strftime('%Y-%m-%d')})", "",
          f"{args.size} x {args.dim} pool, labeled {args.labeled}, validation {args.val}, 10 classes; "
          f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; one run each, "
          "fresh process each.", "",
          "| scorer | value (fit) s | score s | total s | vs knn-shapley | peak RSS MiB | junk in top 10 % (pool) |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['scorer']} | {r['value_s']:.2f} | {r['score_s']:.2f} | {r['total_s']:.2f} | "
                  f"{r['total_s'] / base:.2f}x | {r['peak_rss_mib']:.0f} | {r['junk_share_top10'] * 100:.1f} % "
                  f"({r['junk_share_pool'] * 100:.1f} %) |")
    text = "\n".join(md) + "\n"
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "direct_scoring.md").write_text(text)
    (args.results / "direct_scoring.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                                  "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
