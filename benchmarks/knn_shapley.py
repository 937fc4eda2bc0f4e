"""Benchmark ads.shapley.knn_shapley against pyDVL 0.10 and OpenDataVal 1.3.

Each size gets one synthetic data set (Gaussian class clusters in d dimensions, label
noise on the training labels, float32, fixed seed), saved to a temporary .npz. Ours runs
in this process; each peer runs in its own virtual environment through a runner in
benchmarks/peers/, which times only the valuation call and saves the values. The
markdown table goes to stdout and to RESULTS/knn_shapley.md, the raw numbers to
RESULTS/knn_shapley.json; progress goes to stderr.

All three compute the same quantity for K <= N (Jia et al. 2019, Theorem 1, mean over
validation points, Euclidean distance); see benchmarks/README.md for the differences
that remain (distance precision, tie-breaking).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ads.shapley import knn_shapley  # noqa: E402

log = logging.getLogger("bench.knn_shapley")

DEFAULT_SIZES = "1000x100,5000x500,20000x1000,50000x1000"
PEERS = {
    # name: (label, env option / variable, default env, runner file)
    "pydvl": ("pyDVL", "ADS_BENCH_PYDVL_ENV", "/work/peer-envs/pydvl", "pydvl_runner.py"),
    "opendataval": (
        "OpenDataVal",
        "ADS_BENCH_OPENDATAVAL_ENV",
        "/work/peer-envs/opendataval",
        "opendataval_runner.py",
    ),
}

EPILOG = """\
Examples:
  python benchmarks/knn_shapley.py
  python benchmarks/knn_shapley.py --sizes 1000x100 --repeats 1
  python benchmarks/knn_shapley.py --max-peer-n 50000 --peer-timeout 1200
  ADS_BENCH_PYDVL_ENV=/opt/envs/pydvl python benchmarks/knn_shapley.py --skip-peer opendataval
"""


def make_data(n_train, n_val, *, d=128, n_classes=10, label_noise=0.1, spread=0.5, seed=0):
    """Gaussian class clusters: centres ~ N(0, spread^2 I), points ~ N(centre, I).

    ``label_noise`` of the training labels are replaced by a different class, drawn
    uniformly. Returns float32 features and int64 labels.
    """
    centres = np.random.default_rng(seed).normal(0.0, spread, size=(n_classes, d))
    rng = np.random.default_rng([seed, n_train, n_val])

    def draw(n):
        y = rng.integers(0, n_classes, size=n)
        x = centres[y] + rng.normal(size=(n, d))
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_val, y_val = draw(n_val)
    flip = rng.random(n_train) < label_noise
    y_train[flip] = (y_train[flip] + rng.integers(1, n_classes, size=flip.sum())) % n_classes
    return x_train, y_train, x_val, y_val


def time_ours(data, k, repeats, n_jobs):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        values = knn_shapley(*data, k=k, n_jobs=n_jobs)
        times.append(time.perf_counter() - t0)
    return values, times


def peak_extra_ours(data, k, n_jobs):
    """Peak memory traced during one call, above what was allocated before it (bytes).

    numpy reports its buffers to tracemalloc; BLAS scratch space is not counted.
    """
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        knn_shapley(*data, k=k, n_jobs=n_jobs)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def run_peer(python, runner, npz, k, out_npy, timeout, extra=()):
    """Run one peer runner; returns its JSON dict plus 'values', or {'na': reason}."""
    cmd = [str(python), "-I", str(runner), str(npz), str(k), str(out_npy), *map(str, extra)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tempfile.gettempdir(),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"na": f"timeout > {timeout:g} s"}
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        return {"na": f"runner failed (exit {proc.returncode}): {last[:120]}"}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        return {"na": "runner printed no JSON"}
    res = json.loads(lines[-1])
    res["values"] = np.load(out_npy)
    return res


def machine_info():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "loadavg_at_start": os.getloadavg(),
    }


def _fmt_s(x):
    return "n/a" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def _fmt_ratio(x):
    return "n/a" if x is None else f"{x:,.0f}×" if x >= 10 else f"{x:.1f}×"


def _fmt_diff(x):
    return "n/a" if x is None else f"{x:.1e}"


def _peer_cell(res, fmt, reason=False):
    """A peer's cell; the reason for a missing result is given once, in the time column."""
    if "na" in res:
        return f"n/a ({res['na']})" if reason else "–"
    return fmt(res)


def render_table(rows, labels):
    head = ["n_train", "n_val", "ours median s", "ours peak extra MiB"]
    head += [f"{labels[p]} s" for p in labels]
    head += [f"{labels[p]}/ours" for p in labels]
    head += ["peer peak RSS MiB (" + " / ".join(labels.values()) + ")"]
    head += [f"max abs Δ vs {labels[p]}" for p in labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['n_train']:,}", f"{r['n_val']:,}", _fmt_s(r["ours_median_s"]),
                 f"{r['ours_peak_extra_bytes'] / 2**20:.0f}"]
        peers = r["peers"]
        cells += [_peer_cell(peers[p], lambda q: _fmt_s(q["seconds"]), True) for p in labels]
        cells += [_peer_cell(peers[p], lambda q: _fmt_ratio(q["ratio"])) for p in labels]
        cells += [" / ".join(_peer_cell(peers[p], lambda q: f"{q['peak_rss_kib'] / 1024:.0f}")
                             for p in labels)]
        cells += [_peer_cell(peers[p], lambda q: _fmt_diff(q["max_abs_diff"])) for p in labels]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_sizes(text):
    sizes = []
    for part in text.split(","):
        try:
            n, m = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--sizes must be comma-separated NTRAINxNVAL pairs. Got {part!r}."
            ) from None
        sizes.append((n, m))
    return sizes


def build_parser():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes(DEFAULT_SIZES),
                   help=f"NTRAINxNVAL pairs (default {DEFAULT_SIZES})")
    p.add_argument("--d", type=int, default=128, help="feature dimension (default 128)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    p.add_argument("-k", type=int, default=10, help="K of the KNN classifier (default 10)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs of ours per size; the median is reported (default 3)")
    p.add_argument("--n-jobs", type=int, default=None,
                   help="n_jobs for ours (default: knn_shapley's default)")
    p.add_argument("--max-peer-n", type=int, default=20000,
                   help="skip peers when n_train exceeds this (default 20000)")
    p.add_argument("--peer-timeout", type=float, default=900.0,
                   help="seconds per peer run before it is killed (default 900)")
    p.add_argument("--pydvl-n-jobs", type=int, default=1,
                   help="joblib n_jobs for pyDVL (default 1, its default outside a joblib context)")
    p.add_argument("--skip-peer", action="append", default=[], choices=sorted(PEERS),
                   help="leave a peer out (repeatable)")
    for name, (label, var, default, _) in PEERS.items():
        p.add_argument(f"--{name}-env", type=Path, default=Path(os.environ.get(var, default)),
                       help=f"virtual env with {label} (env var {var}; default {default})")
    p.add_argument("--out-dir", type=Path, default=HERE / "results",
                   help="where knn_shapley.md / .json go (default benchmarks/results)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    labels = {name: PEERS[name][0] for name in PEERS}
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "params": {"d": args.d, "classes": args.classes, "k": args.k, "seed": args.seed,
                   "label_noise": 0.1, "repeats": args.repeats, "n_jobs": args.n_jobs,
                   "max_peer_n": args.max_peer_n, "peer_timeout_s": args.peer_timeout,
                   "pydvl_n_jobs": args.pydvl_n_jobs},
        "peer_versions": {},
        "command": " ".join(["python3", "benchmarks/knn_shapley.py", *(argv or sys.argv[1:])]),
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="ads-bench-") as tmp:
        tmp = Path(tmp)
        for n_train, n_val in args.sizes:
            data = make_data(n_train, n_val, d=args.d, n_classes=args.classes, seed=args.seed)
            npz = tmp / f"data_{n_train}x{n_val}.npz"
            np.savez(npz, x_train=data[0], y_train=data[1], x_val=data[2], y_val=data[3])

            log.info("ours %dx%d: %d run(s)", n_train, n_val, args.repeats)
            ours, times = time_ours(data, args.k, args.repeats, args.n_jobs)
            median = statistics.median(times)
            extra = peak_extra_ours(data, args.k, args.n_jobs)
            log.info("ours %dx%d: median %.3f s, peak extra %.0f MiB",
                     n_train, n_val, median, extra / 2**20)
            row = {"n_train": n_train, "n_val": n_val, "ours_times_s": times,
                   "ours_median_s": median, "ours_peak_extra_bytes": extra,
                   "ours_max_abs_value": float(np.max(np.abs(ours))), "peers": {}}

            for name, (label, _, _, runner) in PEERS.items():
                env = getattr(args, f"{name}_env")
                python = env / "bin" / "python"
                if name in args.skip_peer:
                    res = {"na": "skipped"}
                elif not python.exists():
                    res = {"na": "env missing"}
                elif n_train > args.max_peer_n:
                    res = {"na": f"skipped, n_train > {args.max_peer_n}"}
                else:
                    log.info("%s %dx%d ...", label, n_train, n_val)
                    extra_args = [args.pydvl_n_jobs] if name == "pydvl" else []
                    res = run_peer(python, HERE / "peers" / runner, npz, args.k,
                                   tmp / f"{name}.npy", args.peer_timeout, extra_args)
                if "values" in res:
                    # Same definition, same training-index order: no conversion needed.
                    res["max_abs_diff"] = float(np.max(np.abs(res.pop("values") - ours)))
                    res["ratio"] = res["seconds"] / median
                    meta["peer_versions"][label] = res.pop("versions", {})
                    log.info("%s %dx%d: %.1f s (%.0f× ours), max abs diff %.1e", label,
                             n_train, n_val, res["seconds"], res["ratio"], res["max_abs_diff"])
                elif name not in args.skip_peer:
                    log.info("%s %dx%d: n/a (%s)", label, n_train, n_val, res["na"])
                row["peers"][name] = res
            rows.append(row)

    meta["machine"]["loadavg_at_end"] = os.getloadavg()
    table = render_table(rows, labels)
    m = meta["machine"]
    header = (
        f"KNN-Shapley, d={args.d}, {args.classes} classes, K={args.k}, seed {args.seed}; "
        f"{meta['date']}; {m['nproc']} CPUs ({m['cpu_model']}), 1-min load avg "
        f"{m['loadavg_at_start'][0]:.2f} at start, {m['loadavg_at_end'][0]:.2f} at end; ours: Python {m['python']}, numpy {m['numpy']}, "
        f"n_jobs={args.n_jobs}; peers: "
        + "; ".join(
            f"{label} (" + ", ".join(f"{k} {v}" for k, v in vs.items()) + ")"
            for label, vs in meta["peer_versions"].items()
        )
        + f"; pyDVL joblib n_jobs={args.pydvl_n_jobs}.\n\n"
        f"Command: `{meta['command']}`"
    )
    text = f"{header}\n\n{table}\n"
    print(text)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "knn_shapley.md").write_text(text)
    (args.out_dir / "knn_shapley.json").write_text(
        json.dumps({**meta, "rows": rows}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
