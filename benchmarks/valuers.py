"""Every ``ads`` valuer, and the same methods from pyDVL 0.10 and OpenDataVal 1.3, on the
DVRL paper's use cases (benchmarks/dvrl.py's data and metrics).

For each data set (UCI Adult, Fashion-MNIST CNN embeddings, SMS spam + MiniLM; see
dvrl_data.py) and seed, 20 % of the training labels are flipped; every method values the
training points; reported: detection AUC of flipped labels (lowest values first), the
share of flipped labels found in the lowest 5..50 %, test accuracy of a logistic
regression retrained after removing the lowest / highest 0..50 %, and seconds. Ours run
in this process on one thread; each peer in its own virtual env (as benchmarks/
knn_shapley.py: ``--pydvl-env``, ``--opendataval-env``) through
``peers/*_valuers_runner.py``, which times only the valuation call. Peers' Monte Carlo
methods retrain scikit-learn's LogisticRegression for every prefix, so they get
``--peer-permutations`` permutations and ``--peer-timeout`` seconds (n/a past it).
Tables: RESULTS/valuers.md and .json; one table ranks all methods per data set by
detection AUC (mean over seeds). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from dvrl import DATASETS, INSPECT, REMOVE, discovery_curve, remove_curves  # noqa: E402
from dvrl_data import LOADERS, flip_labels  # noqa: E402
from knn_shapley import PEERS, run_peer  # noqa: E402

from ads.valuers import make_valuer  # noqa: E402

log = logging.getLogger("bench.valuers")

#: label -> (valuer, parameters); --permutations and --dvrl-iterations fill in budgets.
OURS = {
    "knn-shapley": ("knn-shapley", {"n_jobs": 1}),  # one thread, as every row of ours
    "loo (knn)": ("loo", {}),
    "loo (logistic acc. exact refits)": ("loo", {"utility": "logistic", "metric": "accuracy"}),
    "loo (logistic log-lik)": ("loo", {"utility": "logistic"}),
    "tmc-shapley (knn)": ("tmc-shapley", {}),
    "tmc-shapley (logistic)": ("tmc-shapley", {"utility": "logistic"}),
    "tmc-shapley (logistic acc.)": ("tmc-shapley", {"utility": "logistic", "metric": "accuracy"}),
    # a budget row: one chain of 10 permutations, each scanned to position 100 only
    "tmc-shapley (logistic; 100 positions)": ("tmc-shapley", {"utility": "logistic", "n_chains": 1, "max_positions": 100,
                                                              "max_permutations": 10}),
    "tmc-shapley (logistic; 200 positions)": ("tmc-shapley", {"utility": "logistic", "n_chains": 1, "max_positions": 200,
                                                              "max_permutations": 10}),
    "beta-shapley 16/1 (knn)": ("beta-shapley", {}),
    "beta-shapley 16/1 (logistic)": ("beta-shapley", {"utility": "logistic"}),
    "data-oob": ("data-oob", {}),
    "data-oob (100 extra trees)": ("data-oob", {"n_estimators": 100}),
    "data-oob (200 extra trees; depth 12)": ("data-oob", {"n_estimators": 200, "max_depth": 12}),
    # trees on the top 16 principal components (for sentence embeddings; benchmarks/results/valuers_oob_pca.md)
    "data-oob (16 PCs)": ("data-oob", {"n_components": 16}),
    "data-oob (100 extra trees; 16 PCs)": ("data-oob", {"n_estimators": 100, "n_components": 16}),
    "data-oob (paper: 200 CART trees; 0/1)": ("data-oob", {"learner": "tree", "max_depth": None, "score": "accuracy",
                                                           "n_estimators": 200}),
    "data-oob (200 logistic; 1 step; p(y|x))": ("data-oob", {"learner": "logistic", "steps": 1, "score": "proba",
                                                             "n_estimators": 200}),
    "influence (val loss)": ("influence", {}),
    "influence (smooth accuracy)": ("influence", {"metric": "accuracy"}),
    "influence (self)": ("influence", {"target": "self"}),
    "representer (validation)": ("representer", {}),
    "representer (self)": ("representer", {"target": "self"}),
    "dvrl": ("dvrl", {}),
}
#: the peers' methods: (runner method, budget option)
PEER_METHODS = {"loo": "none", "tmc-shapley": "perms", "beta-shapley": "perms", "data-oob": "trees", "knn-shapley": "k"}
#: our row each peer method is compared with: our valuer's default configuration on the logistic-regression
#: utility / learner the peers use (default metric: validation log-likelihood; the peers offer only accuracy)
SAME = {"loo": "loo (logistic log-lik)", "tmc-shapley": "tmc-shapley (logistic)",
        "beta-shapley": "beta-shapley 16/1 (logistic)", "data-oob": "data-oob", "knn-shapley": "knn-shapley"}
RUNNERS = {"pydvl": "pydvl_valuers_runner.py", "opendataval": "opendataval_valuers_runner.py"}


def evaluate(v, flipped, data, y_noisy, seed, seconds):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed + 7)
    v = np.nan_to_num(np.asarray(v, dtype=np.float64), nan=np.nanmean(v))
    return dict(seconds=seconds, auc=float(roc_auc_score(flipped, -v)), discovery=discovery_curve(v, flipped, rng),
                **remove_curves(v, data, y_noisy, np.random.default_rng(seed + 7)))


def run_ours(name, data, y_noisy, seed, args, dataset=None):
    method, params = OURS[name]
    params = dict(params)
    if method in ("tmc-shapley", "beta-shapley"):
        logistic = params.get("utility") == "logistic"
        params.setdefault("max_permutations", args.logistic_permutations if logistic else args.permutations)
        params["progress"] = False
    elif method == "dvrl":  # with benchmarks/dvrl.py's per-data-set settings (e.g. no standardising of Adult's one-hot)
        params.update(DATASETS[dataset]["dvrl"] if dataset else {}, iterations=args.dvrl_iterations, progress=False)
    else:
        params["progress"] = False
    t = time.perf_counter()
    v = make_valuer(method, **params).fit(data["x_train"], y_noisy, data["x_val"], data["y_val"],
                                          n_classes=data["n_classes"], random_state=seed)
    return v.values_, time.perf_counter() - t


def load_case(name, seed, noise):
    """Data set ``name`` for ``seed`` (embeddings standardised on the training rows), its
    noisy training labels (a share ``noise`` flipped) and the flipped mask."""
    data = dict(LOADERS[name](seed=seed, **DATASETS[name]["load"]))
    if name != "adult":
        mu, sd = data["x_train"].mean(0), data["x_train"].std(0) + 1e-8
        for k in ("x_train", "x_val", "x_test"):
            data[k] = ((data[k] - mu) / sd).astype(np.float32)
    y_noisy, flipped = flip_labels(data["y_train"], noise, data["n_classes"], np.random.default_rng(seed))
    return data, y_noisy, flipped


def run_dataset(name, seed, args, peers):
    data, y_noisy, flipped = load_case(name, seed, args.noise)
    log.info("%s seed %d: %d train (%d flipped), %d val, %d features", name, seed, len(y_noisy), flipped.sum(),
             len(data["y_val"]), data["x_train"].shape[1])
    rows = {}
    if not getattr(args, "warmed", False):  # imports and first-call costs are not part of any method's time
        small = dict(data, x_train=data["x_train"][:60], x_val=data["x_val"][:30], y_val=data["y_val"][:30])
        for label in args.ours:
            if OURS[label][0] != "dvrl":
                run_ours(label, small, y_noisy[:60], seed, args)
        args.warmed = True
    for label in args.ours:
        v, s = run_ours(label, data, y_noisy, seed, args, dataset=name)
        rows[f"ours: {label}"] = evaluate(v, flipped, data, y_noisy, seed, s)
        log.info("  ours %-32s %8.2f s  AUC %.3f", label, s, rows[f"ours: {label}"]["auc"])
    v = np.random.default_rng(seed + 1000).random(len(y_noisy))
    rows["random"] = evaluate(v, flipped, data, y_noisy, seed, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "data.npz"
        np.savez(npz, x_train=data["x_train"].astype(np.float64), y_train=y_noisy, x_val=data["x_val"].astype(np.float64),
                 y_val=data["y_val"])
        for peer, python in peers.items():
            for method in args.peer_methods:
                key = f"{PEERS[peer][0]}: {method}"
                if method in args.reuse_methods and args.reused is not None:
                    old = args.reused["results"].get(str(seed), {}).get(name, {}).get("rows", {}).get(key)
                    if old is not None:
                        rows[key] = dict(old, reused=args.reused["meta"]["date"])
                        log.info("  %-40s reused from %s", key, args.reused["meta"]["date"])
                        continue
                budget = {"none": 0, "perms": args.peer_permutations, "trees": 200, "k": 10}[PEER_METHODS[method]]
                extra = (budget, args.peer_timeout) if peer == "pydvl" and method in ("tmc-shapley", "beta-shapley") else (budget,)
                res = run_peer(python, HERE / "peers" / RUNNERS[peer], npz, method, Path(tmp) / "v.npy",
                               args.peer_timeout + 60, extra=extra)
                if "na" not in res and not np.isfinite(res["values"]).all():  # e.g. OpenDataVal's Beta on SMS seed 1
                    res = {"na": f"{int((~np.isfinite(res['values'])).sum())} non-finite values"}
                if "na" in res:
                    rows[key] = {"na": res["na"]}
                    log.info("  %-40s n/a (%s)", key, res["na"])
                    continue
                rows[key] = evaluate(res["values"], flipped, data, y_noisy, seed, res["seconds"])
                rows[key]["versions"] = res.get("versions")
                log.info("  %-40s %8.2f s  AUC %.3f", key, res["seconds"], rows[key]["auc"])
    return dict(n_train=len(y_noisy), n_val=len(data["y_val"]), n_features=int(data["x_train"].shape[1]),
                n_classes=int(data["n_classes"]), data_sha=fingerprint(data, y_noisy), rows=rows)


def fingerprint(data, y_noisy) -> str:
    """SHA-256 (16 hex digits) of the training and validation arrays and the noisy labels: runs
    with the same fingerprint valued the same data (valuers_rank.py checks it before joining)."""
    import hashlib

    h = hashlib.sha256()
    for a in (data["x_train"], data["x_val"], data["y_val"], y_noisy):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def aggregate(ok: list[dict]) -> dict:
    """One row's results averaged over the seeds ``ok`` that have one (a peer may time out on
    some): mean seconds, AUC and curves, the AUC's std, whether any was reused, and n."""
    a = {m: np.mean([o[m] for o in ok], axis=0) for m in ("seconds", "auc", "discovery", "remove_low", "remove_high")}
    a.update(auc_std=float(np.std([o["auc"] for o in ok])), reused=any(o.get("reused") for o in ok), n=len(ok))
    return a


def curve_cells(a: dict) -> str:
    """The ranking's middle cells: found at 5 / 20 / 50 %, accuracy after removing the lowest and
    the highest 10 % / 30 %."""
    i5, i20, i50 = 0, list(INSPECT).index(0.2), len(INSPECT) - 1
    r10, r30 = list(REMOVE).index(0.1), list(REMOVE).index(0.3)
    return (f"{a['discovery'][i5]:.3f} / {a['discovery'][i20]:.3f} / {a['discovery'][i50]:.3f} | "
            f"{a['remove_low'][r10]:.3f} / {a['remove_low'][r30]:.3f} | {a['remove_high'][r10]:.3f} / "
            f"{a['remove_high'][r30]:.3f}")


def markdown(results, args, meta) -> str:
    out = ["# Valuers: flipped-label detection, data removal, seconds\n",
           f"{int(args.noise * 100)} % of training labels flipped; seeds {args.seeds}; our Monte Carlo valuers: "
           f"{args.permutations} permutations on the KNN utility, {args.logistic_permutations} on the logistic one; "
           f"the peers' TMC / Beta Shapley get {args.peer_permutations}; peers time out after {args.peer_timeout} s. One thread for ours. Generated by "
           f"`benchmarks/valuers.py` on {meta['date']}, load average at start {meta['loadavg']}.\n"]
    for name in args.datasets:
        seeded = [(s, results[s][name]) for s in results if name in results[s]]
        per_seed = [r for _, r in seeded]
        if not per_seed:
            continue
        r0 = per_seed[0]
        out.append(f"\n## {DATASETS[name]['title']}: {r0['n_train']} train / {r0['n_val']} val, {r0['n_features']} "
                   f"features, {r0['n_classes']} classes\n")
        keys = list(r0["rows"])
        agg = {}
        for k in keys:
            ok = [r["rows"][k] for r in per_seed if "na" not in r["rows"].get(k, {"na": 1})]
            if not ok:
                agg[k] = {"na": per_seed[0]["rows"][k].get("na", "missing")}
                continue
            agg[k] = aggregate(ok)
        out.append("**Ranking by detection AUC** (mean over seeds; found = share of flipped labels among the "
                   "lowest-valued 5 / 20 / 50 %; accuracy after removing the lowest / highest 10 % and 30 %)\n")
        out.append("| rank | method | AUC | found 5 % / 20 % / 50 % | remove low 10 % / 30 % | remove high 10 % / 30 % | seconds |")
        out.append("|---|---|---|---|---|---|---|")
        ranked = sorted((k for k in keys if "na" not in agg[k]), key=lambda k: -agg[k]["auc"])
        for rank, k in enumerate(ranked, 1):
            a = agg[k]
            few = f" ({a['n']} of {len(per_seed)} seeds)" if a["n"] < len(per_seed) else ""
            out.append(f"| {rank} | {k}{few} | {a['auc']:.3f} ± {a['auc_std']:.3f} | {curve_cells(a)} | {a['seconds']:.2f} |")
        for k in keys:
            if "na" in agg[k]:
                out.append(f"| – | {k} | n/a ({agg[k]['na']}) | | | | |")
        out.append("\n**Ours vs the peers, same method** (AUC, seconds, peer seconds / ours). Ours is our valuer's "
                   "default configuration on the peers' model, L2 logistic regression: LOO, TMC and Beta Shapley with "
                   "the validation log-likelihood utility (the peers offer only validation accuracy; ours with accuracy "
                   "is in the ranking above); Data-OOB with its defaults (50 depth-8 extra trees scored by p(y|x); pyDVL bags "
                   "a 200-tree random forest, OpenDataVal 200 logistic regressions; the paper's setting and our bagged "
                   "logistic heads are in the ranking above). † = peer row reused from an earlier run on the same data, seed and flips (see the notes).\n")
        out.append("| method | ours | pyDVL 0.10 | OpenDataVal 1.3 |")
        out.append("|---|---|---|---|")
        for m in args.peer_methods:
            cells = []
            for peer in ("pyDVL", "OpenDataVal"):
                ours = agg.get(f"ours: {SAME[m]}")
                p = agg.get(f"{peer}: {m}")
                if p is None or "na" in p:
                    cells.append("n/a" + (f" ({p['na']})" if p else " (not run)"))
                elif ours is None or "na" in ours:
                    cells.append(f"{p['auc']:.3f}, {p['seconds']:.2f} s")
                else:
                    cells.append(f"{p['auc']:.3f}, {p['seconds']:.2f} s ({ratio(p['seconds'], ours['seconds'])})")
                if p is not None and "na" not in p and p.get("reused"):
                    cells[-1] += " †"
                if p is not None and "na" not in p and p["n"] < len(per_seed):
                    cells[-1] += f"; mean of the {p['n']} of {len(per_seed)} seeds it finished"
            ours = agg.get(f"ours: {SAME[m]}")
            o = "not run" if ours is None or "na" in ours else f"{ours['auc']:.3f}, {ours['seconds']:.2f} s ({SAME[m]})"
            out.append(f"| {m} | {o} | {cells[0]} | {cells[1]} |")
        out += budget_table(seeded, args)
    return "\n".join(out) + "\n"


#: AUCs this close count as equal in the equal-or-better table: KNN-Shapley values equal to ours up to
#: float rounding still order some tied points differently (AUC differences of ~1e-5)
AUC_TOL = 1e-4


def budget_table(per_seed, args) -> list[str]:
    """For each seed and peer row: the fastest of our rows of the same method on that seed
    (any setting run, e.g. a smaller permutation budget) whose AUC is equal or better, and the
    peer's seconds over its seconds: the issue's "runtime at equal or better detection". Per
    seed, because a peer that times out on some seeds would otherwise be averaged over others
    than ours. A timed-out peer is compared, as a lower bound, with our default row."""
    out = ["\n**Same method at equal or better detection**, per seed: for each peer row, our fastest row of that "
           "method on the same seed and the peers' model (any setting in this run) with an AUC at least the peer's (less 1e-4), and peer seconds / ours "
           "(> for a peer that timed out: a lower bound against our default row).\n",
           "| method | seed | peer | peer AUC, seconds | our fastest row at ≥ its AUC | ratio |", "|---|---|---|---|---|---|"]
    for m in args.peer_methods:
        model = OURS[SAME[m]][1].get("utility")  # on the peers' model: a KNN-utility row is not compared
        for seed, r in per_seed:
            rows = r["rows"]
            known = {k: OURS.get(k[6:], (None, {})) for k in rows if k.startswith("ours: ")}  # (rows of old runs may
            mine = [k for k, (method, params) in known.items()  # carry labels OURS no longer has)
                    if method == m and "na" not in rows[k] and params.get("utility") == model]
            for peer in ("pyDVL", "OpenDataVal"):
                p = rows.get(f"{peer}: {m}")
                if p is None:
                    continue
                if "na" in p:
                    d = rows.get(f"ours: {SAME[m]}")
                    if "timeout" in p["na"] and d is not None and "na" not in d:
                        bound = float(p["na"].split(">")[1].split("s")[0])
                        out.append(f"| {m} | {seed} | {peer} | {p['na']} | {SAME[m]}: {d['auc']:.3f}, {d['seconds']:.2f} s "
                                   f"| > {ratio(bound, d['seconds'])} |")
                    else:
                        out.append(f"| {m} | {seed} | {peer} | n/a ({p['na']}) | | – |")
                    continue
                good = sorted((k for k in mine if rows[k]["auc"] >= p["auc"] - AUC_TOL), key=lambda k: rows[k]["seconds"])
                if not good:
                    out.append(f"| {m} | {seed} | {peer} | {p['auc']:.3f}, {p['seconds']:.2f} s | none of ours | – |")
                    continue
                o = rows[good[0]]
                out.append(f"| {m} | {seed} | {peer} | {p['auc']:.3f}, {p['seconds']:.2f} s | {good[0][6:]}: {o['auc']:.3f}, "
                           f"{o['seconds']:.2f} s | {ratio(p['seconds'], o['seconds'])} |")
    return out


def ratio(peer_s: float, ours_s: float) -> str:
    """Peer seconds over ours as the tables print it: whole numbers from 10× up, one decimal below."""
    r = peer_s / max(ours_s, 1e-9)
    return f"{r:.0f}×" if r >= 10 else f"{r:.1f}×"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="adult,fashion,sms")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--ours", default=",".join(OURS), help="comma-separated labels of our rows (see OURS)")
    ap.add_argument("--permutations", type=int, default=1000, help="our TMC / Beta permutations on the KNN utility")
    ap.add_argument("--peer-permutations", type=int, default=20,
                    help="permutations of the logistic-utility Monte Carlo methods, ours and the peers'")
    ap.add_argument("--dvrl-iterations", type=int, default=2000)
    ap.add_argument("--logistic-permutations", type=int, default=None,
                    help="our TMC / Beta permutations on the logistic utility (default: --peer-permutations)")
    ap.add_argument("--peer-methods", default=",".join(PEER_METHODS))
    ap.add_argument("--reuse-peers", type=Path, default=None,
                    help="an earlier valuers.json: peer rows of --reuse-methods are taken from it (same seed and data set)")
    ap.add_argument("--reuse-methods", default="loo,tmc-shapley,beta-shapley")
    ap.add_argument("--peer-timeout", type=float, default=600.0)
    for name, (_, var, default, _) in PEERS.items():
        ap.add_argument(f"--{name}-env", type=Path, default=Path(os.environ.get(var, default)))
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    args.datasets = [s for s in args.datasets.split(",") if s]
    args.ours = [s for s in args.ours.split(",") if s]
    args.peer_methods = [s for s in args.peer_methods.split(",") if s]
    args.reuse_methods = [s for s in args.reuse_methods.split(",") if s]
    if args.logistic_permutations is None:
        args.logistic_permutations = args.peer_permutations
    args.reused = json.loads(args.reuse_peers.read_text()) if args.reuse_peers else None
    bad = [s for s in args.ours if s not in OURS] + [s for s in args.peer_methods if s not in PEER_METHODS]
    if bad:
        ap.error(f"unknown method {bad[0]!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    peers = {} if args.skip_peers else {p: getattr(args, f"{p}_env") / "bin" / "python" for p in PEERS}
    for p, py in list(peers.items()):
        if not py.exists():
            log.warning("%s env missing (%s): its rows are n/a", p, py)
            peers.pop(p)
    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), machine=platform.machine(),
                python=platform.python_version(), loadavg=" ".join(f"{x:.2f}" for x in os.getloadavg()),
                args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "reused"})
    t0 = time.perf_counter()
    results = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        results[seed] = {}
        for name in args.datasets:
            results[seed][name] = run_dataset(name, seed, args, peers)
            meta["total_s"] = time.perf_counter() - t0
            tmp = args.out / "valuers.json.tmp"
            tmp.write_text(json.dumps(dict(meta=meta, results={str(k): v for k, v in results.items()}), indent=1,
                                      default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
            os.replace(tmp, args.out / "valuers.json")
            md = markdown(results, args, meta)
            (args.out / "valuers.md.tmp").write_text(md)
            os.replace(args.out / "valuers.md.tmp", args.out / "valuers.md")
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
