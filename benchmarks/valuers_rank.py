"""One ranking of every valuer per data set from several runs of benchmarks/valuers.py.

The valuers benchmark runs its slow rows (peers' Monte Carlo methods, our DVRL and
Fashion-MNIST's logistic utilities) in separate invocations. This script joins their
JSON results into one table per data set: every row of every input on the same data
set and seed (the first input that has a row wins; later copies are ignored), ranked
by detection AUC, mean over the seeds it has, with the run each row came from. It
refuses inputs that valued different data: runs that record a data fingerprint
(``data_sha``: a hash of the arrays and noisy labels) must agree on it, and every row that
is a function of the data alone (``random``, KNN-Shapley, LOO, influence, representer)
must have the same AUC wherever two runs have it (within 1e-4: tied values may order
differently at float rounding). Fashion-MNIST's CNN embeddings are recomputed in a fresh
environment and differ between installs; Adult's and SMS's do not.

    python3 benchmarks/valuers_rank.py benchmarks/results/valuers_fast.json \\
        benchmarks/results/valuers_sms_mc.json ... --out benchmarks/results/valuers_ranking.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dvrl import DATASETS  # noqa: E402
from valuers import AUC_TOL, aggregate, curve_cells  # noqa: E402

#: rows whose values are a function of the data alone (no seeded draws): equal AUCs in two runs, or different data
DETERMINISTIC = {"random", "ours: knn-shapley", "ours: loo (knn)", "ours: loo (logistic log-lik)",
                 "ours: loo (logistic acc. exact refits)", "ours: influence (val loss)", "ours: influence (self)",
                 "ours: influence (smooth accuracy)", "ours: representer (validation)", "ours: representer (self)",
                 "pyDVL: knn-shapley", "OpenDataVal: knn-shapley", "pyDVL: loo"}


def merge(runs: list[tuple[str, dict]]) -> dict:
    """{data set: {seed: {row: (result, source)}}} over ``runs`` [(name, valuers.json)]; the
    first run with a row wins. Raises ValueError when two runs disagree on the data
    fingerprint or on the AUC of a row in DETERMINISTIC."""
    out: dict = {}
    prints: dict = {}  # (data set, seed) -> {run: fingerprint}
    for src, run in runs:
        for seed, per in run["results"].items():
            for name, r in per.items():
                rows = out.setdefault(name, {}).setdefault(seed, {})
                sha = prints.setdefault((name, seed), {})
                if r.get("data_sha"):
                    for other, h in sha.items():
                        if h != r["data_sha"]:
                            raise ValueError(f"{src}: {name} seed {seed} has data fingerprint {r['data_sha']}, {other} "
                                             f"has {h}: not the same data")
                    sha[src] = r["data_sha"]
                for k in DETERMINISTIC & r["rows"].keys() & rows.keys():
                    mine, (theirs, other) = r["rows"][k], rows[k]
                    if "auc" in mine and "auc" in theirs and abs(mine["auc"] - theirs["auc"]) > AUC_TOL:
                        raise ValueError(f"{src}: {name} seed {seed} has {k} AUC {mine['auc']:.6f}, {other} has "
                                         f"{theirs['auc']:.6f}: not the same data or flips")
                for k, v in r["rows"].items():
                    rows.setdefault(k, (v, src))
    return out


def table(name: str, seeds: dict, runs: dict) -> list[str]:
    keys = sorted({k for rows in seeds.values() for k in rows})
    agg, na = {}, {}
    for k in keys:
        have = [seeds[s][k] for s in sorted(seeds) if k in seeds[s]]
        ok = [v for v, _ in have if "na" not in v]
        srcs = sorted({runs[src] for _, src in have})
        if not ok:
            na[k] = (have[0][0]["na"], srcs)
            continue
        agg[k] = dict(aggregate(ok), srcs=srcs)
    out = [f"\n## {DATASETS[name]['title']}\n",
           "| rank | method | seeds | AUC | found 5 % / 20 % / 50 % | remove low 10 % / 30 % | remove high 10 % / 30 % "
           "| seconds | run |", "|---|---|---|---|---|---|---|---|---|"]
    for rank, k in enumerate(sorted(agg, key=lambda k: -agg[k]["auc"]), 1):
        a = agg[k]
        seeds_txt = f"{a['n']}" + (f" of {len(seeds)}" if a["n"] < len(seeds) else "")
        out.append(f"| {rank} | {k}{' †' if a['reused'] else ''} | {seeds_txt} | {a['auc']:.3f} ± {a['auc_std']:.3f} | "
                   f"{curve_cells(a)} | {a['seconds']:.2f} | {', '.join(a['srcs'])} |")
    for k, (why, srcs) in na.items():
        out.append(f"| – | {k} | | n/a ({why}) | | | | | {', '.join(srcs)} |")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path, help="valuers.json files, the preferred first")
    ap.add_argument("--datasets", default="adult,sms,fashion")
    ap.add_argument("--out", type=Path, default=None, help="markdown file (default: stdout only)")
    args = ap.parse_args(argv)
    runs = []
    for p in args.inputs:
        try:
            runs.append((p.name, json.loads(p.read_text())))
        except (OSError, ValueError) as e:
            ap.exit(2, f"valuers_rank: cannot read {p}: {e}\n")
    try:
        merged = merge(runs)
    except ValueError as e:
        ap.exit(2, f"valuers_rank: {e}\n")
    labels = {src: src.removesuffix(".json") for src, _ in runs}
    lines = ["# Valuers: one ranking per data set, joined from several runs\n",
             "Every row of the runs below on the same data, seeds and flips (checked: the runs' data fingerprints where they "
             "record one, and the AUCs of the rows that depend on the data alone, agree), ranked by detection AUC, mean over the seeds the row has (± the standard deviation over "
             "them); found = share of flipped labels among the lowest-valued 5 / 20 / 50 %; accuracy after removing "
             "the lowest / highest 10 % and 30 %; seconds = mean per seed, one thread for ours, measured in the run "
             "named (runs differ in load and environment; compare seconds within a run's own page). † = a peer row "
             "the run reused from an earlier one. Generated by `benchmarks/valuers_rank.py "
             + " ".join(str(p) for p in args.inputs) + "`.\n", "Runs:\n"]
    lines += [f"- {labels[src]} ({run['meta']['date'][:16].replace('T', ' ')}): `{' '.join(str(run['meta']['args'].get(k)) for k in ('datasets', 'seeds'))}`, ours "
              f"{len(run['meta']['args'].get('ours', []))} rows, peers "
              f"{'none' if run['meta']['args'].get('skip_peers') else ', '.join(run['meta']['args'].get('peer_methods', []))}"
              for src, run in runs]
    for name in [s for s in args.datasets.split(",") if s]:
        if name in merged:
            lines += table(name, merged[name], labels)
    md = "\n".join(lines) + "\n"
    if args.out:
        tmp = args.out.with_suffix(".md.tmp")
        tmp.write_text(md)
        tmp.replace(args.out)
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
