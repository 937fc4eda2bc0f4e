"""Effectiveness benchmark: the ADS paper's Fig. 5 / Table 1 on real MNIST pools.

Runs `ads loop` (the library) for several strategies and seeds on (a) a curated MNIST pool
and (b) a Cheap-10-style cheap-MNIST pool (clean + corrupted + domain-shifted + off-task +
mislabeled digits), then reports per round: test accuracy mean ± std over seeds, seconds
per batch, and the share of each strategy's picks by source.

Runs are resumable: each (pool, strategy, seed) has its own loop directory under
``--workdir``; finished runs are reused, so the benchmark can be run in pieces.

Usage::

    python benchmarks/effectiveness.py                       # defaults below
    python benchmarks/effectiveness.py --seeds 0 1 2 --rounds 5 --budget 1000 --pool 50000
    python benchmarks/effectiveness.py --pools cheap --strategies coreset+ads coreset

Outputs: benchmarks/results/effectiveness.{md,json} and effectiveness_{pool}.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ads import loop as L  # noqa: E402


# name: loop configuration (strategy, fraction, scorer + params, pre-selection shape)
def _cfg(strategy, fraction=1.0, scorer="knn-shapley", preselect="top", **params):
    shape = {"shape": preselect} if isinstance(preselect, str) else preselect
    return {"strategy": strategy, "fraction": fraction, "scorer": scorer, "scorer_params": params, "preselect": shape}


STRATEGIES = {
    "coreset": _cfg("coreset"),
    "paper": _cfg("coreset", 0.1, "knn-shapley", aggregate="max", top_m=10, k=10),  # the ADS paper's recipe
    "coreset+ads": _cfg("coreset", 0.1, "knn-shapley", aggregate="max", top_m=10, k=10),  # same, old name
    "coreset+ads-weighted": _cfg("coreset", 0.1, "knn-shapley", aggregate="weighted", top_m=10, k=10),
    "coreset+ads-f0.3": _cfg("coreset", 0.3, "knn-shapley", aggregate="max", top_m=10, k=10),
    "direct-top": _cfg("coreset", 0.1, "direct", "top"),
    "direct-balanced": _cfg("coreset", 0.1, "direct", "balanced"),
    "direct-balanced-f0.3": _cfg("coreset", 0.3, "direct", "balanced"),
    "direct-threshold": _cfg("coreset", 0.1, "direct", "threshold"),
    "direct-threshold-p10": _cfg("coreset", 0.1, "direct", {"shape": "threshold", "percentile": 10.0}),
    "direct-threshold-p2": _cfg("coreset", 0.1, "direct", {"shape": "threshold", "percentile": 2.0}),
    "direct-threshold-c20": _cfg("coreset", 0.1, "direct", {"shape": "threshold", "max_candidates_factor": 20}),
    "direct-filter": _cfg("coreset", 0.1, "direct", {"shape": "threshold", "max_candidates": 0}),
    "direct-filter+rejects": _cfg("coreset", 0.1, "direct", {"shape": "threshold", "max_candidates": 0,
                                                              "near_rejected": True}),
    "direct-filter-p10+rejects": _cfg("coreset", 0.1, "direct", {"shape": "threshold", "max_candidates": 0,
                                                                  "percentile": 10.0, "near_rejected": True}),
    "coreset+rejects": _cfg("coreset", 1.0, "direct", {"shape": "top", "near_rejected": True}),
    "badge+direct-filter+rejects": _cfg("badge", 0.1, "direct", {"shape": "threshold", "max_candidates": 0,
                                                                  "near_rejected": True}),
    "weighted": _cfg("coreset-weighted", 1.0, "direct"),
    "weighted+rejects": _cfg("coreset-weighted", 1.0, "direct", {"shape": "top", "near_rejected": True}),
    "weighted-filter+rejects": _cfg("coreset-weighted", 0.1, "direct", {"shape": "threshold", "max_candidates": 0,
                                                                         "near_rejected": True}),
    "weighted-max+rejects": _cfg("coreset-weighted", 1.0, "direct", {"shape": "top", "near_rejected": True},
                                 aggregate="max"),
    "direct-threshold+rejects": _cfg("coreset", 0.1, "direct", {"shape": "threshold", "near_rejected": True}),
    "direct-balanced-f0.3+rejects": _cfg("coreset", 0.3, "direct", {"shape": "balanced", "near_rejected": True}),
    "direct-balanced-f0.5+rejects": _cfg("coreset", 0.5, "direct", {"shape": "balanced", "near_rejected": True}),
    "badge+direct-threshold+rejects": _cfg("badge", 0.1, "direct", {"shape": "threshold", "near_rejected": True}),
    "badge": _cfg("badge"),
    "badge+direct-threshold": _cfg("badge", 0.1, "direct", "threshold"),
    "badge+direct-balanced": _cfg("badge", 0.1, "direct", "balanced"),
    "badge+paper": _cfg("badge", 0.1, "knn-shapley", aggregate="max", top_m=10, k=10),
    "entropy": _cfg("entropy"),
    "random": _cfg("random"),
}
COARSE = ("clean", "corrupted", "shifted", "off-task", "mislabeled")
# Pools: cheap = today's (off-task items get random digit labels, 10 % of clean digits
# mislabeled); cheap-reject / fashion-reject = a rejecting annotator (off-task items are
# rejected: paid for, nothing learned) with uniform annotator noise on accepted labels.
POOLS = ("curated", "cheap", "cheap-reject", "fashion-reject")
REJECT_FRACTIONS = {"clean": 0.5, "corrupted": 0.15, "shifted": 0.2, "off-task": 0.15}


def coarse(tag: str) -> str:
    try:
        from ads.datasets.cheap import coarse_source

        return coarse_source(tag)
    except ImportError:  # pragma: no cover
        return tag


def build_data(pool_name: str, root: Path, args) -> dict:
    noise = f"-n{args.annotator_noise:g}" if pool_name.endswith("-reject") else ""
    out = root / f"data-{pool_name}-p{args.pool}-l{args.labeled}-t{args.test}-s{args.data_seed}{noise}"
    paths = {n: out / f"{n}.zarr" for n in ("labeled", "val", "test", "pool")}
    if all(p.exists() for p in paths.values()):
        return {k: str(v) for k, v in paths.items()}
    if pool_name == "curated":
        from ads.datasets import make_mnist

        return make_mnist(out, labeled=args.labeled, val=args.val, pool=args.pool, test=args.test,
                          seed=args.data_seed, overwrite=True)
    from ads.datasets.cheap import make_cheap_mnist

    kw = {}
    if pool_name.endswith("-reject"):
        kw = dict(fractions=REJECT_FRACTIONS, label_noise=0.0, off_task_labels="reject",
                  annotator_noise=args.annotator_noise, task="fashion" if pool_name.startswith("fashion") else "mnist")
    return {k: str(v) for k, v in make_cheap_mnist(out, labeled=args.labeled, val=args.val, pool=args.pool,
                                                   test=args.test, seed=args.data_seed, overwrite=True, **kw).items()}


def run_one(data: dict, name: str, seed: int, workdir: Path, args) -> list[dict]:
    spec = STRATEGIES[name]
    run = L.Run(workdir)
    if args.report_only:
        return L.read_rounds(workdir) if run.exists() and run.load()["stage"] == "done" else None
    if not run.exists():
        pre = dict(spec["preselect"])
        if "max_candidates_factor" in pre:
            pre["max_candidates"] = pre.pop("max_candidates_factor") * args.budget
        cfg = L.LoopConfig(pool=data["pool"], labeled=data["labeled"], val=data["val"], test=data["test"],
                           rounds=args.rounds, budget=args.budget, strategy=spec["strategy"], fraction=spec["fraction"],
                           seed=seed, oracle="hidden", embed={"epochs": args.epochs, "arch": "cnn"},
                           scorer=spec["scorer"], scorer_params=spec["scorer_params"], preselect=pre)
        L.start(cfg, workdir)
    if run.load()["stage"] != "done":
        t = time.time()
        from cli import resume_run

        resume_run(workdir, progress=False)
        print(f"[{workdir.name}] finished in {time.time() - t:.0f}s", file=sys.stderr, flush=True)
    return L.read_rounds(workdir)


def summarise(all_runs: dict) -> dict:
    """{pool: {strategy: {round: {...}}}} with mean/std accuracy, seconds, source shares."""
    out = {}
    for pool_name, by_strat in all_runs.items():
        out[pool_name] = {}
        for name, runs in by_strat.items():
            rounds = {}
            n_rounds = min(len(r) for r in runs)
            for k in range(n_rounds):
                recs = [r[k] for r in runs]
                accs = [x["test_accuracy"] for x in recs]
                secs = [sum(v for s, v in x["seconds"].items() if s != "label") for x in recs if x["picked"]]
                shares = {}
                picked = sum(sum(x.get("sources", {}).values()) for x in recs)
                for x in recs:
                    for tag, n in x.get("sources", {}).items():
                        shares[coarse(tag)] = shares.get(coarse(tag), 0) + n
                rounds[k] = {
                    "n_labeled": recs[0]["n_labeled"],
                    "n_bought": recs[0].get("n_bought"),
                    "wasted_mean": float(np.mean([x.get("n_rejected", 0) for x in recs])),
                    "acc_mean": float(np.mean(accs)),
                    "acc_std": float(np.std(accs)),
                    # median over seeds: robust to a run timed while the machine was busy
                    "seconds_per_batch": float(np.median(secs)) if secs else None,
                    "shares": {t: shares.get(t, 0) / picked for t in COARSE} if picked else {},
                    "seeds": len(recs),
                }
            out[pool_name][name] = rounds
    return out


def to_markdown(summary: dict, args) -> str:
    lines = [f"# Effectiveness (ads loop), {time.strftime('%Y-%m-%d')}", "",
             f"Machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores. "
             f"Rounds {args.rounds}, budget {args.budget}/round, initial labeled {args.labeled}, pool {args.pool}, "
             f"val {args.val}, test {args.test}, seeds {args.seeds}, CNN max {args.epochs} epochs "
             f"(early stopping on validation, patience 5).", ""]
    for pool_name, by_strat in summary.items():
        names = list(by_strat)
        n_rounds = max(len(v) for v in by_strat.values())
        lines += [f"## {pool_name} pool: test accuracy (mean ± std over seeds)", "",
                  "| round | labeled | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for k in range(n_rounds):
            first = next(v[k] for v in by_strat.values() if k in v)
            cells = [f"{v[k]['acc_mean'] * 100:.2f} ± {v[k]['acc_std'] * 100:.2f}" if k in v else "-" for v in by_strat.values()]
            lines.append(f"| {k} | {first['n_labeled']} | " + " | ".join(cells) + " |")
        lines += ["", f"## {pool_name} pool: labels wasted on rejected items (cumulative, mean over seeds)", "",
                  "| round | bought | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for k in range(n_rounds):
            first = next(v[k] for v in by_strat.values() if k in v)
            cells = [f"{v[k]['wasted_mean']:.0f}" if k in v else "-" for v in by_strat.values()]
            lines.append(f"| {k} | {first.get('n_bought')} | " + " | ".join(cells) + " |")
        lines += ["", f"## {pool_name} pool: seconds per batch (train+embed+value+score+strategy, median over seeds)", "",
                  "| round | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for k in range(n_rounds - 1):
            cells = [f"{v[k]['seconds_per_batch']:.1f}" if k in v and v[k]["seconds_per_batch"] else "-" for v in by_strat.values()]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines += ["", f"## {pool_name} pool: share of picks by source (all rounds)", "",
                  "| strategy | " + " | ".join(COARSE) + " |", "|---|" + "---|" * len(COARSE)]
        for name, rounds in by_strat.items():
            tot = {}
            for r in rounds.values():
                for t, s in r["shares"].items():
                    tot[t] = tot.get(t, 0) + s
            n = sum(1 for r in rounds.values() if r["shares"])
            lines.append(f"| {name} | " + " | ".join(f"{tot.get(t, 0) / n * 100:.1f}%" if n else "-" for t in COARSE) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict, out_dir: Path, stem: str = "effectiveness") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for pool_name, by_strat in summary.items():
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
        for name, rounds in by_strat.items():
            ks = sorted(rounds)
            # at equal labels bought: rejected items are paid for, so n_labeled would flatter waste
            x = [rounds[k]["n_bought"] if rounds[k].get("n_bought") is not None else rounds[k]["n_labeled"] for k in ks]
            m = np.array([rounds[k]["acc_mean"] for k in ks]) * 100
            s = np.array([rounds[k]["acc_std"] for k in ks]) * 100
            a1.plot(x, m, marker="o", label=name)
            a1.fill_between(x, m - s, m + s, alpha=0.15)
            sec = [(k, rounds[k]["seconds_per_batch"]) for k in ks if rounds[k]["seconds_per_batch"]]
            if sec:
                a2.plot(*zip(*sec), marker="o", label=name)
        a1.set(xlabel="labels bought (after the initial set)", ylabel="test accuracy (%)", title=f"{pool_name} pool: accuracy")
        a2.set(xlabel="round", ylabel="seconds per batch", title=f"{pool_name} pool: time per batch")
        for a in (a1, a2):
            a.grid(alpha=0.3)
        a1.legend(fontsize=7, ncol=2 if len(by_strat) > 8 else 1)
        fig.tight_layout()
        p = out_dir / f"{stem}_{pool_name}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pools", nargs="+", default=["curated", "cheap"], choices=list(POOLS))
    ap.add_argument("--strategies", nargs="+", default=["paper", "coreset", "entropy", "random"], choices=list(STRATEGIES))
    ap.add_argument("--annotator-noise", type=float, default=0.05, help="annotator error rate of the *-reject pools")
    ap.add_argument("--name", default="effectiveness", help="file stem of the results")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--labeled", type=int, default=1000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--test", type=int, default=10000)
    ap.add_argument("--pool", type=int, default=50000)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=HERE / "runs" / "effectiveness")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--report-only", action="store_true", help="summarise the finished runs only; run nothing")
    args = ap.parse_args(argv)
    all_runs = {}
    for pool_name in args.pools:
        data = None if args.report_only else build_data(pool_name, args.workdir, args)
        all_runs[pool_name] = {}
        for name in args.strategies:
            runs = []
            for seed in args.seeds:
                noise = f"-n{args.annotator_noise:g}" if pool_name.endswith("-reject") else ""
                wd = (args.workdir / f"{pool_name}{noise}-p{args.pool}-l{args.labeled}-t{args.test}-r{args.rounds}-b{args.budget}"
                      f"-e{args.epochs}" / f"{name}-s{seed}")
                recs = run_one(data, name, seed, wd, args)
                if recs is not None:
                    runs.append(recs)
            if runs:
                all_runs[pool_name][name] = runs
        if not all_runs[pool_name]:
            del all_runs[pool_name]
    summary = summarise(all_runs)
    md = to_markdown(summary, args)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.md").write_text(md)
    (args.results / f"{args.name}.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                               "summary": summary}, indent=1))
    plot(summary, args.results, args.name)
    print(md)


if __name__ == "__main__":
    main()
