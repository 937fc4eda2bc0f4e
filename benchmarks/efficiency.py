"""Seconds per batch of each strategy with and without ADS pre-selection, and the peers.

For every pool size N and embedding dimension d, one synthetic data set: clustered
class embeddings (10 classes, a few Gaussian sub-clusters each), 10 % label noise on
the labeled set, 10 % off-cluster "junk" pool points, pool probabilities from a
logistic regression fitted on the labeled set (float32). No network here embeds
500,000 real examples, so the embeddings are synthetic (see benchmarks/README.md).

Each cell runs in a fresh subprocess (killed after --timeout), which reports its wall
seconds and its peak extra memory (``ru_maxrss`` minus the RSS after imports and data
loading):

* without ADS: the strategy on the whole pool;
* with ADS: exact KNN-Shapley of the labeled set on the validation set, per-class value
  regressors fitted and applied to the whole pool, pre-selection of the top fraction,
  then the strategy on the candidates. The first three stages do not depend on the
  strategy: they run once per data set (one subprocess) and their seconds are added to
  every strategy's.

The peer comparison (one size, batch --peer-batch) also runs scikit-activeml's CoreSet
and Badge in their own virtual env (benchmarks/peers/skactiveml_runner.py) on the same
data. Before timing, a small check compares our coreset and BADGE picks with naive
oracles written here. Table: stdout and RESULTS/efficiency.md; raw numbers:
RESULTS/efficiency.json; bar chart: RESULTS/efficiency.png. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

log = logging.getLogger("bench.efficiency")

ALL_STRATEGIES = ("coreset", "kmedians", "badge", "random", "entropy", "margin")
SKAL_ENV_VAR = "ADS_BENCH_SKACTIVEML_ENV"
SKAL_ENV_DEFAULT = "/work/peer-envs/skactiveml"
PEER_LABELS = {"coreset": "scikit-activeml CoreSet", "badge": "scikit-activeml Badge"}
AUTHORS_BADGE = "BADGE, authors' code (JordanAsh/badge)"

EPILOG = """\
Examples:
  python benchmarks/efficiency.py                                   # the full grid (long)
  python benchmarks/efficiency.py --sizes 50000 --dims 128 --skip-peers
  python benchmarks/efficiency.py --sizes 500000 --dims 128 --strategies coreset,badge \\
      --peer-size 200000 --peer-dim 128 --peer-batch 1000
  python benchmarks/efficiency.py --sizes 20000 --dims 64 --batch 500 --labeled 1000 \\
      --peer-size 20000 --peer-dim 64 --peer-batch 200 --timeout 60    # a quick run
"""


# --------------------------------------------------------------------------- data


def make_data(n_pool, d, *, n_labeled, n_val=1000, n_classes=10, clusters_per_class=5,
              label_noise=0.1, junk=0.1, seed=0, chunk=50_000):
    """Clustered synthetic embeddings; returns a dict of arrays (see module docstring).

    Class centres ~ N(0, 0.5² I); each class has ``clusters_per_class`` sub-centres
    ~ N(class centre, 0.3² I); points ~ N(sub-centre, I). A fraction ``junk`` of the
    pool is off-cluster noise ~ N(0, 1.5² I). ``label_noise`` of the labeled points get
    another class, drawn uniformly. The validation set is clean.
    """
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng([seed, n_pool, d, n_labeled])
    centres = rng.normal(0.0, 0.5, size=(n_classes, d))
    sub = centres.repeat(clusters_per_class, axis=0) + rng.normal(
        0.0, 0.3, size=(n_classes * clusters_per_class, d))

    def draw(n, junk_share=0.0):
        x = np.empty((n, d), dtype=np.float32)
        y = np.empty(n, dtype=np.int64)
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            c = rng.integers(sub.shape[0], size=m)
            block = sub[c] + rng.normal(size=(m, d))
            is_junk = rng.random(m) < junk_share
            block[is_junk] = rng.normal(0.0, 1.5, size=(int(is_junk.sum()), d))
            x[s : s + m] = block
            y[s : s + m] = np.where(is_junk, -1, c // clusters_per_class)
        return x, y

    xl, yl = draw(n_labeled)
    flip = rng.random(n_labeled) < label_noise
    yl[flip] = (yl[flip] + rng.integers(1, n_classes, size=int(flip.sum()))) % n_classes
    xv, yv = draw(n_val)
    pool, pool_y = draw(n_pool, junk)
    clf = LogisticRegression(max_iter=300).fit(xl, yl)
    proba = np.concatenate([clf.predict_proba(pool[s : s + chunk]) for s in range(0, n_pool, chunk)])
    return {"xl": xl, "yl": yl, "xv": xv, "yv": yv, "pool": pool,
            "proba": proba.astype(np.float32), "pool_truth": pool_y}


def save_data(data, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in data.items():
        np.save(folder / f"{name}.npy", arr)


# ------------------------------------------------------------------------ oracles


# Shared with the tests: one module of independent, simple reference implementations.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import naive_badge, naive_coreset  # noqa: E402


def oracle_check(seed):
    """Our coreset and BADGE vs the naive oracles on a 5k × 128 pool; True if equal."""
    import strategies

    data = make_data(5000, 128, n_labeled=500, n_val=100, seed=seed)
    X, XL, P = data["pool"], data["xl"], data["proba"]
    ours_c = strategies.get("coreset").select(X, 200, X_labeled=XL)
    ours_b = strategies.get("badge").select(X, 200, proba=P, random_state=seed)
    return {"size": "5000 x 128, n=200, labeled 500",
            "coreset": bool(np.array_equal(ours_c, naive_coreset(X, 200, XL))),
            "badge": bool(np.array_equal(ours_b, naive_badge(X, P, 200, seed)))}


# ------------------------------------------------------------------------- worker


def _status_kib(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _memory_baseline():
    """Reset the peak-RSS mark (Linux: ``5`` > /proc/self/clear_refs) and return the RSS.

    Without the reset, ``ru_maxrss`` keeps the high-water mark of the imports and of
    data loading, which would hide or inflate the algorithm's own peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status_kib("VmRSS")


def _peak_extra_kib(base):
    return max(_status_kib("VmHWM"), 0) - base


def worker(spec):
    """One measurement in a fresh process; prints a JSON line.

    spec: {"kind": "prep"|"strategy", "data": dir, "batch", "fraction", "strategy",
    "cand": path or None, "seed", "out": path}.
    """
    import faiss  # noqa: F401  (imported before the RSS baseline, like torch)
    import torch  # noqa: F401

    import strategies
    from ads.regress import ValueRegressor
    from ads.select import preselect
    from ads.shapley import knn_shapley

    folder = Path(spec["data"])
    load = lambda name: np.load(folder / f"{name}.npy")  # noqa: E731
    pool, xl, yl = load("pool"), load("xl"), load("yl")
    out = {}
    if spec["kind"] == "prep":
        xv, yv, proba = load("xv"), load("yv"), load("proba")
        base = _memory_baseline()
        t = time.perf_counter()
        values = knn_shapley(xl, yl, xv, yv, k=10)
        out["value_s"] = time.perf_counter() - t
        t = time.perf_counter()
        reg = ValueRegressor(n_neighbors=10, top_m=10, aggregate="max").fit(xl, yl, values, proba.shape[1])
        from ads._validation import SCORE_BLOCK_ROWS

        step = SCORE_BLOCK_ROWS  # as ads.select.score_pool scores the pool
        scores = np.concatenate([reg.predict(pool[s : s + step], proba[s : s + step])
                                 for s in range(0, pool.shape[0], step)])
        out["score_s"] = time.perf_counter() - t
        t = time.perf_counter()
        cand = preselect(scores, spec["batch"], spec["fraction"])
        out["preselect_s"] = time.perf_counter() - t
        np.save(spec["out"], cand)
        out["n_candidates"] = int(cand.size)
        truth = load("pool_truth")
        out["junk_share_pool"] = float(np.mean(truth < 0))
        out["junk_share_candidates"] = float(np.mean(truth[cand] < 0))
    else:
        strat = strategies.get(spec["strategy"])
        proba = load("proba") if strat.needs_proba else None
        cand = np.load(spec["cand"]) if spec["cand"] else None
        base = _memory_baseline()
        t = time.perf_counter()
        if cand is not None:  # the gather is part of the pipeline's strategy stage
            X, P = pool[cand], (proba[cand] if proba is not None else None)
        else:
            X, P = pool, proba
        picks = strat.select(X, spec["batch"], X_labeled=xl, proba=P, random_state=spec["seed"])
        out["strategy_s"] = time.perf_counter() - t
        np.save(spec["out"], cand[picks] if cand is not None else picks)
    out["peak_extra_kib"] = _peak_extra_kib(base)
    print(json.dumps(out))


def run_subprocess(cmd, timeout):
    """Run cmd; return its last JSON line as a dict, or {'na': reason}."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"na": "timeout", "timeout_s": timeout}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return {"na": f"failed (exit {proc.returncode}): {last[:160]}"}
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"na": "printed no JSON"}
    res = json.loads(lines[-1])
    res["process_wall_s"] = wall
    return res


def run_worker(spec, timeout):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    return run_subprocess(cmd, timeout)


# -------------------------------------------------------------------------- cells


def measure_config(folder, n_pool, d, batch, strategies_, args, tmp, *, timeout, with_full=True):
    """Rows for one data set: prep once, then each strategy with and without ADS."""
    prep = run_worker({"kind": "prep", "data": str(folder), "batch": batch,
                       "fraction": args.fraction, "seed": args.seed,
                       "out": str(tmp / "cand.npy")}, timeout)
    log.info("  prep (value + score + preselect): %s", _brief(prep))
    rows = []
    for name in strategies_:
        row = {"n_pool": n_pool, "d": d, "batch": batch, "labeled": args.labeled,
               "fraction": args.fraction, "strategy": name, "prep": prep,
               "loadavg": os.getloadavg()[0]}
        if "na" in prep:
            row["ads"] = {"na": "prep " + prep["na"]}
        else:
            row["ads"] = run_worker({"kind": "strategy", "data": str(folder), "batch": batch,
                                     "strategy": name, "cand": str(tmp / "cand.npy"),
                                     "seed": args.seed, "out": str(tmp / f"ads_{name}.npy")},
                                    timeout)
            if "na" not in row["ads"]:
                a = row["ads"]
                a["total_s"] = prep["value_s"] + prep["score_s"] + prep["preselect_s"] + a["strategy_s"]
                a["peak_extra_kib_max"] = max(a["peak_extra_kib"], prep["peak_extra_kib"])
        log.info("  %-8s with ADS: %s", name, _brief(row["ads"]))
        if with_full:
            row["full"] = run_worker({"kind": "strategy", "data": str(folder), "batch": batch,
                                      "strategy": name, "cand": None, "seed": args.seed,
                                      "out": str(tmp / f"full_{name}.npy")}, timeout)
            log.info("  %-8s whole pool: %s", name, _brief(row["full"]))
        else:
            row["full"] = {"na": "not run"}
        row["speedup"] = speedup(row)
        rows.append(row)
    return rows


def speedup(row):
    """(value, is_lower_bound) of without/with, or None."""
    full, ads = row["full"], row["ads"]
    if "na" in ads:
        return None
    if "na" not in full:
        return [full["strategy_s"] / ads["total_s"], False]
    if full["na"] == "timeout":
        return [full["timeout_s"] / ads["total_s"], True]
    return None


def run_peers(folder, batch, args, tmp, ours):
    """scikit-activeml CoreSet and Badge on the same data; overlap with our picks."""
    python = Path(args.skactiveml_env) / "bin" / "python"
    out = {}
    for method in ("coreset", "badge"):
        if args.skip_peers:
            out[method] = {"na": "skipped"}
            continue
        if not python.exists():
            out[method] = {"na": f"env missing ({args.skactiveml_env})"}
            continue
        picks_path = tmp / f"peer_{method}.npy"
        cmd = [str(python), "-I", str(HERE / "peers" / "skactiveml_runner.py"), str(folder), method,
               str(batch), str(picks_path), str(args.seed)]
        res = run_subprocess(cmd, args.peer_timeout)
        if "na" not in res:
            res["peak_extra_kib"] = res["peak_rss_kib"] - res["rss_before_kib"]
            theirs = np.load(picks_path)
            mine_path = tmp / f"full_{method}.npy"
            if mine_path.exists() and "na" not in ours.get(method, {"na": 1}):
                mine = np.load(mine_path)
                res["overlap"] = len(set(mine.tolist()) & set(theirs.tolist())) / batch
                res["same_order"] = bool(np.array_equal(mine, theirs))
                res["first_pick_equal"] = bool(mine[0] == theirs[0])
        log.info("  %s: %s", PEER_LABELS[method], _brief(res))
        out[method] = res
    return out


def _brief(res):
    if "na" in res:
        limit = f" > {res['timeout_s']:g}s" if "timeout_s" in res else ""
        return f"n/a ({res['na']}{limit})"
    keys = [k for k in ("total_s", "strategy_s", "seconds", "value_s", "score_s") if k in res]
    return ", ".join(f"{k} {res[k]:.2f}" for k in keys) + f", peak extra {res['peak_extra_kib'] / 1024:.0f} MiB"


# ------------------------------------------------------------------------- report


def _s(res, key):
    if "na" in res:
        if res["na"] == "timeout":
            return f"> {res['timeout_s']:g}"
        return "n/a" if res["na"] == "not run" else f"n/a ({res['na']})"
    v = res[key]
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _mib(res, key="peak_extra_kib"):
    return "–" if "na" in res else f"{res[key] / 1024:,.0f}"


def _ratio(sp):
    if sp is None:
        return "n/a"
    v, lower = sp
    txt = f"{v:.2g}×" if v < 0.1 else f"{v:.1f}×" if v < 10 else f"{v:.0f}×"
    return ("≥ " + txt) if lower else txt


def render_grid(rows):
    head = ["pool N", "d", "batch", "strategy", "without ADS s", "with ADS s",
            "= value + score + preselect + strategy s", "speed-up", "candidates",
            "peak extra MiB without / with"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p, a = r["prep"], r["ads"]
        stages = ("–" if "na" in p or "na" in a else
                  f"{p['value_s']:.2f} + {p['score_s']:.2f} + {p['preselect_s']:.2f} + {a['strategy_s']:.2f}")
        cells = [f"{r['n_pool']:,}", str(r["d"]), f"{r['batch']:,}", r["strategy"],
                 _s(r["full"], "strategy_s"), _s(a, "total_s"), stages, _ratio(r["speedup"]),
                 "–" if "na" in p else f"{p['n_candidates']:,}",
                 f"{_mib(r['full'])} / {_mib(a, 'peak_extra_kib_max') if 'na' not in a else '–'}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_peers(peer):
    """Our strategies on the whole pool vs scikit-activeml (and the authors' BADGE)."""
    rows = {r["strategy"]: r for r in peer["rows"]}
    head = ["method", "seconds", "peak extra MiB", "ours is faster by", "picks vs ours"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in ("coreset", "badge"):
        r = rows.get(method)
        if r is None:
            continue
        mine = r["full"]
        lines.append(f"| ours `{method}`, whole pool | {_s(mine, 'strategy_s')} | {_mib(mine)} | – | – |")
        if "na" not in r["ads"]:
            lines.append(f"| ours `{method}` + ADS (fraction {r['fraction']:g}, all stages) | "
                         f"{_s(r['ads'], 'total_s')} | {_mib(r['ads'], 'peak_extra_kib_max')} | – | – |")
        res = peer["peers"][method]
        faster = "n/a"
        if "na" not in mine:
            if "na" not in res:
                faster = _ratio([res["seconds"] / mine["strategy_s"], False])
            elif res["na"] == "timeout":
                faster = _ratio([res["timeout_s"] / mine["strategy_s"], True])
        agree = "–"
        if "overlap" in res:
            agree = ("same picks, same order" if res["same_order"] else
                     f"{res['overlap']:.1%} of picks shared; first pick {'equal' if res['first_pick_equal'] else 'differs'}")
        lines.append(f"| {PEER_LABELS[method]} | {_s(res, 'seconds')} | {_mib(res)} | {faster} | {agree} |")
        if method == "badge":
            lines.append(f"| {AUTHORS_BADGE} | n/a: not on PyPI | – | – | – |")
    return "\n".join(lines)


def plot(panels, peer, path):
    """One panel per (N, d, batch): seconds per batch without / with ADS (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels) + (1 if peer else 0)
    cols = min(3, n)
    rows_ = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(5.2 * cols, 4.2 * rows_), squeeze=False)

    def value(res, key):
        if "na" in res:
            return (res["timeout_s"], True) if res["na"] == "timeout" else (None, False)
        return res[key], False

    def bar(ax, x, res, key, color, width=0.38):
        v, lower = value(res, key)
        if v is None:
            ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7, transform=ax.get_xaxis_transform())
            return None
        ax.bar(x, v, width, color=color, hatch="//" if lower else None, edgecolor="black", linewidth=0.4)
        if lower:
            ax.text(x, v, f"> {v:g}", ha="center", va="bottom", fontsize=7)
        return v

    for ax, ((N, d, batch), rows) in zip(axes.flat, panels.items()):
        xs = np.arange(len(rows))
        for x, r in zip(xs, rows):
            top = bar(ax, x - 0.2, r["full"], "strategy_s", "#9e9e9e")
            low = bar(ax, x + 0.2, r["ads"], "total_s", "#1f77b4")
            if r["speedup"] is not None and low is not None:
                y = max(top or low, low) * (3.5 if r["speedup"][1] else 1.6)  # clear of "> T"
                ax.text(x, y, _ratio(r["speedup"]), ha="center", va="bottom", fontsize=8, fontweight="bold")
        ax.set_xticks(xs, [r["strategy"] for r in rows], rotation=30, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylim(top=ax.get_ylim()[1] * 6)
        ax.set_title(f"pool {N:,} × d {d}, batch {batch:,}", fontsize=9)
        ax.set_ylabel("seconds per batch")
        ax.grid(axis="y", which="major", alpha=0.3)
    if peer:
        ax = axes.flat[len(panels)]
        rows = {r["strategy"]: r for r in peer["rows"]}
        labels, x = [], 0
        for method in ("coreset", "badge"):
            if method not in rows:
                continue
            v = bar(ax, x, rows[method]["full"], "strategy_s", "#1f77b4", 0.7)
            bar(ax, x + 1, peer["peers"][method], "seconds", "#d62728", 0.7)
            labels += [f"ours\n{method}", PEER_LABELS[method].replace(" ", "\n", 1)]
            res = peer["peers"][method]
            if v is not None and ("na" not in res or res["na"] == "timeout"):
                t = res.get("seconds", res.get("timeout_s"))
                ax.text(x + 0.5, max(t, v) * 1.6, _ratio([t / v, "na" in res]), ha="center",
                        fontsize=8, fontweight="bold")
            x += 2
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylim(top=ax.get_ylim()[1] * 6)
        N, d, b = peer["n_pool"], peer["d"], peer["batch"]
        ax.set_title(f"vs scikit-activeml: pool {N:,} × d {d}, batch {b:,}", fontsize=9)
        ax.set_ylabel("seconds per batch (whole pool)")
        ax.grid(axis="y", which="major", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("#9e9e9e", "#1f77b4", "#d62728")]
    fig.legend(handles, ["whole pool (no ADS)", "ADS pre-selection, all stages / ours",
                         "scikit-activeml 1.0.1"], loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("Seconds per batch (log scale); bold: speed-up; hatched: timed out", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_info():
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    import faiss
    import sklearn
    import torch

    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__, "faiss": faiss.__version__,
            "sklearn": sklearn.__version__, "loadavg_at_start": os.getloadavg()}


# ---------------------------------------------------------------------------- cli


def _ints(text):
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers. Got {text!r}.") from None


def _strategies(text):
    names = [v for v in text.split(",") if v]
    bad = [v for v in names if v not in ALL_STRATEGIES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown strategy {bad[0]!r}; choose from {', '.join(ALL_STRATEGIES)}.")
    return names


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=_ints, default=[50_000, 200_000, 500_000],
                   help="pool sizes (default 50000,200000,500000)")
    p.add_argument("--dims", type=_ints, default=[128, 512], help="embedding dimensions (default 128,512)")
    p.add_argument("--strategies", type=_strategies, default=list(ALL_STRATEGIES),
                   help=f"strategies of the grid (default {','.join(ALL_STRATEGIES)})")
    p.add_argument("--grid-strategies-at", action="append", default=[], metavar="NxD=S1,S2",
                   help="restrict the strategies for one size, e.g. 500000x128=coreset,badge (repeatable)")
    p.add_argument("--batch", type=int, default=5000, help="picks per batch (default 5000)")
    p.add_argument("--labeled", type=int, default=5000, help="labeled points (default 5000)")
    p.add_argument("--fraction", type=float, default=0.1, help="ADS pre-selection fraction (default 0.1)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per cell before it is killed (default 300)")
    p.add_argument("--timeout-at", action="append", default=[], metavar="NxD=SECONDS",
                   help="another cell timeout for one size, e.g. 500000x128=600 (repeatable)")
    p.add_argument("--peer-size", type=int, default=200_000, help="pool size of the peer comparison (default 200000; 0 = none)")
    p.add_argument("--peer-dim", type=int, default=128, help="dimension of the peer comparison (default 128)")
    p.add_argument("--peer-batch", type=int, default=1000, help="batch of the peer comparison (default 1000)")
    p.add_argument("--peer-timeout", type=float, default=900.0, help="seconds per peer run (default 900)")
    p.add_argument("--skip-peers", action="store_true", help="do not run scikit-activeml")
    p.add_argument("--skactiveml-env", default=os.environ.get(SKAL_ENV_VAR, SKAL_ENV_DEFAULT),
                   help=f"virtual env with scikit-activeml (env var {SKAL_ENV_VAR}; default {SKAL_ENV_DEFAULT})")
    p.add_argument("--seed", type=int, default=0, help="data and strategy seed (default 0)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results", help="default benchmarks/results")
    p.add_argument("--name", default="efficiency", help="file stem of the outputs (default efficiency)")
    p.add_argument("--replot", action="store_true",
                   help="only redraw OUT_DIR/NAME.png from OUT_DIR/NAME.json (no measurement)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(json.loads(argv[1]))
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    if args.replot:
        saved = json.loads((args.out_dir / f"{args.name}.json").read_text())
        panels = {}
        for r in saved["grid"]:
            panels.setdefault((r["n_pool"], r["d"], r["batch"]), []).append(r)
        plot(panels, saved["peer"], args.out_dir / f"{args.name}.png")
        return 0
    only, timeouts = {}, {}
    for item in args.grid_strategies_at:
        key, _, names = item.partition("=")
        n, _, d = key.partition("x")
        only[(int(n), int(d))] = _strategies(names)
    for item in args.timeout_at:
        key, _, sec = item.partition("=")
        n, _, d = key.partition("x")
        timeouts[(int(n), int(d))] = float(sec)
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine_info(),
            "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "data": "10 classes x 5 Gaussian sub-clusters, 10% label noise (labeled), 10% junk (pool), "
                    "val 1000 clean, proba = logistic regression on the labeled set",
            "command": " ".join(["python3", "benchmarks/efficiency.py", *argv])}
    t_start = time.perf_counter()
    log.info("oracle check (5k pool) ...")
    meta["oracle"] = oracle_check(args.seed)
    identical = meta["oracle"]["coreset"] and meta["oracle"]["badge"]
    log.info("identical: %s (%s)", "yes" if identical else "no", meta["oracle"])
    print(f"identical: {'yes' if identical else 'no'} "
          f"(coreset {meta['oracle']['coreset']}, badge {meta['oracle']['badge']})")

    grid, panels, peer = [], {}, None
    with tempfile.TemporaryDirectory(prefix="ads-eff-") as tmp:
        tmp = Path(tmp)
        def data_folder(n, d):
            folder = tmp / f"data_{n}x{d}"
            if not folder.exists():
                t = time.perf_counter()
                save_data(make_data(n, d, n_labeled=args.labeled, seed=args.seed), folder)
                log.info("data %d x %d ready (%.1f s)", n, d, time.perf_counter() - t)
            return folder

        for n in args.sizes:
            for d in args.dims:
                names = only.get((n, d), args.strategies)
                folder = data_folder(n, d)
                log.info("grid %d x %d, batch %d: %s", n, d, args.batch, ",".join(names))
                rows = measure_config(folder, n, d, args.batch, names, args, tmp,
                                      timeout=timeouts.get((n, d), args.timeout))
                grid += rows
                panels[(n, d, args.batch)] = rows
        if args.peer_size:
            n, d = args.peer_size, args.peer_dim
            folder = data_folder(n, d)
            log.info("peer comparison %d x %d, batch %d", n, d, args.peer_batch)
            rows = measure_config(folder, n, d, args.peer_batch, ["coreset", "badge"], args, tmp,
                                  timeout=timeouts.get((n, d), args.timeout))
            ours = {r["strategy"]: r["full"] for r in rows}
            peer = {"n_pool": n, "d": d, "batch": args.peer_batch, "labeled": args.labeled,
                    "rows": rows, "peers": run_peers(folder, args.peer_batch, args, tmp, ours)}
    meta["wall_s"] = time.perf_counter() - t_start
    meta["loadavg_at_end"] = os.getloadavg()

    m = meta["machine"]
    header = (f"Seconds per batch, {meta['date']}; {m['nproc']} CPUs ({m['cpu_model']}, shared; load avg at "
              f"start {m['loadavg_at_start'][0]:.2f}, at end {meta['loadavg_at_end'][0]:.2f}), {m['memory_gib']} GiB; Python {m['python']}, numpy "
              f"{m['numpy']}, torch {m['torch']}, faiss {m['faiss']}, scikit-learn {m['sklearn']}.\n"
              f"Data: {meta['data']}; labeled {args.labeled}; ADS fraction {args.fraction:g}, KNN-Shapley K=10, "
              f"regressors 10-NN, top-10 classes, max; cell timeout {args.timeout:g} s{''.join(f' ({n}x{d}: {t:g} s)' for (n, d), t in timeouts.items())}, peer timeout "
              f"{args.peer_timeout:g} s; one run per cell.\n"
              f"Oracle check ({meta['oracle']['size']}): identical: {'yes' if identical else 'no'} "
              f"(coreset {meta['oracle']['coreset']}, badge {meta['oracle']['badge']}).\n\n"
              f"Command: `{meta['command']}`")
    parts = [header]
    if grid:
        parts += ["### With and without ADS pre-selection", render_grid(grid)]
    if peer:
        parts += [f"### Peers: pool {peer['n_pool']:,} × d {peer['d']}, batch {peer['batch']:,}, "
                  f"labeled {peer['labeled']:,}", render_grid(peer["rows"]), render_peers(peer)]
    text = "\n\n".join(parts) + "\n"
    print(text)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{args.name}.md").write_text(text)
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(
        {**meta, "grid": grid, "peer": peer}, indent=2, default=str) + "\n")
    plot(panels, peer, args.out_dir / f"{args.name}.png")
    log.info("wrote %s.{md,json,png} in %s (%.0f s)", args.name, args.out_dir, meta["wall_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
