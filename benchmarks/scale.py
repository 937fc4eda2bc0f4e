"""Pools past one machine's memory (issue 13): seconds and the driver's peak RSS of
``ads select`` on features pools of 1M / 5M / 20M x 128 float32 on disk, today's path
(main before the out-of-core change, where it fits) against the new one in-process and on a
LocalCluster of 1 and 2 workers; and the embedding throughput of a 1M 28x28 image pool per
worker. Not a test.

Features: a 10-class Gaussian mixture in 128-d (centres N(0, 1), noise N(0, 1.5^2)),
written chunk by chunk (the 20M pool is 10.2 GB; it is never in memory). Labeled 5,000,
validation 500, budget 5,000, ``--scorer knn-shapley`` (the paper's recipe: exact
KNN-Shapley values, per-class kNN value regressors), ``--preselect top --fraction
50000/N`` (50,000 candidates at every size, so the strategy's cost is the same), Coreset.
Every run is ``python -m cli select ...`` in a fresh process with a fresh embedding cache;
the driver's peak RSS is that process's ``ru_maxrss`` (``os.wait4``: Dask workers are
its grandchildren and are not counted; the scheduler runs inside it and is).

Images: 1M 28x28 grey images (MNIST's 50,000 training images, each repeated with random
shifts of up to 2 pixels), the CNN trained once on 1,000 MNIST labels (3 epochs); only
the embedding pass over the pool is timed (workers warmed up first: torch and ads imported,
as on a long-lived cluster): in-process with 1 and 2 torch threads and on a LocalCluster of
1 and 2 one-thread workers; every mode must produce the same bytes.

    python benchmarks/scale.py                        # everything (about 1.5 h on 2 cores)
    python benchmarks/scale.py --sizes 1000000 --no-images
    python benchmarks/scale.py --old-ref 3853ae6      # today's path = that commit

Tables on stdout and in RESULTS/scale.{md,json}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

D, C = 128, 10
CANDIDATES = 50_000


# ---------------------------------------------------------------- data
def _features(rng, centres, n):
    y = rng.integers(0, C, n)
    return (centres[y] + rng.normal(0, 1.5, (n, D))).astype(np.float32), y


def write_big_features(path: Path, n: int, seed: int = 0, chunk_rows: int = 8192) -> Path:
    """A features pool store of ``n`` rows written chunk by chunk (same schema, checksums
    and codecs as :func:`ads.pool.write_pool`, which needs the array in memory)."""
    import zarr

    from ads.pool import SCHEMA_VERSION, _create

    if (path / "zarr.json").exists():
        return path
    centres = np.random.default_rng(1234).normal(0, 1, (C, D))
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    g.attrs.update({"ads_schema": SCHEMA_VERSION, "kind": "features", "classes": [str(c) for c in range(C)]})
    x = _create(g, "x", (n, D), np.float32, (chunk_rows, D))
    ids = _create(g, "ids", (n,), str, (chunk_rows * 4,))
    step = chunk_rows * 16
    t = time.time()
    for s in range(0, n, step):
        e = min(n, s + step)
        rng = np.random.default_rng([seed, s])
        x[s:e] = _features(rng, centres, e - s)[0]
        ids[s:e] = np.char.add("p", np.arange(s, e).astype(str))
        if (s // step) % 40 == 0:
            print(f"  {path.name}: {e}/{n} rows, {time.time() - t:.0f} s", file=sys.stderr)
    os.replace(tmp, path)
    return path


def write_small_features(root: Path):
    from ads.pool import write_pool

    centres = np.random.default_rng(1234).normal(0, 1, (C, D))
    rng = np.random.default_rng(99)
    out = {}
    for name, n in (("labeled", 5000), ("val", 500)):
        p = root / f"f-{name}.zarr"
        if not p.exists():
            x, y = _features(rng, centres, n)
            write_pool(p, x, ids=[f"{name}{i}" for i in range(n)], y=y, classes=[str(c) for c in range(C)])
        out[name] = p
    return out


def write_images(root: Path, n: int):
    """labeled 1000 / val 500 MNIST stores and an ``n``-image pool of shifted MNIST
    training images, chunk by chunk."""
    import zarr

    from ads.datasets.mnist import load_mnist
    from ads.pool import SCHEMA_VERSION, _create, write_pool

    m = load_mnist()
    xtr, ytr = m["train"]
    lab = root / "i-labeled.zarr"
    val = root / "i-val.zarr"
    pool = root / f"i-pool-{n}.zarr"
    rng = np.random.default_rng(5)
    perm = rng.permutation(len(ytr))
    if not lab.exists():
        write_pool(lab, xtr[perm[:1000]], ids=[f"l{i}" for i in perm[:1000]], y=ytr[perm[:1000]],
                   classes=[str(c) for c in range(10)])
        write_pool(val, xtr[perm[1000:1500]], ids=[f"v{i}" for i in perm[1000:1500]], y=ytr[perm[1000:1500]],
                   classes=[str(c) for c in range(10)])
    if not (pool / "zarr.json").exists():
        tmp = pool.with_name(pool.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        g.attrs.update({"ads_schema": SCHEMA_VERSION, "kind": "images", "classes": [str(c) for c in range(10)]})
        rows = 4096
        x = _create(g, "x", (n, 28, 28, 1), np.uint8, (rows, 28, 28, 1))
        ids = _create(g, "ids", (n,), str, (rows * 4,))
        step = rows * 8
        for s in range(0, n, step):
            e = min(n, s + step)
            r = np.random.default_rng([7, s])
            src = xtr[r.integers(0, len(xtr), e - s)]
            dx, dy = r.integers(-2, 3, 2)
            x[s:e] = np.roll(src, (int(dx), int(dy)), axis=(1, 2))[..., None]
            ids[s:e] = np.char.add("q", np.arange(s, e).astype(str))
        os.replace(tmp, pool)
    return lab, val, pool


# ---------------------------------------------------------------- runs
def run_measured(cmd, env=None, cwd=ROOT) -> dict:
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env)
    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    import threading

    def pump(src, dst):
        for chunk in iter(lambda: src.read(65536), b""):
            dst.write(chunk)

    th = [threading.Thread(target=pump, args=(p.stdout, out_f)), threading.Thread(target=pump, args=(p.stderr, err_f))]
    for x in th:
        x.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    for x in th:
        x.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    return {"rc": p.returncode, "wall_s": wall, "peak_rss_mib": ru.ru_maxrss / 1024,
            "stdout": out_f.read().decode(), "stderr": err_f.read().decode()[-3000:]}


def select_cmd(python_path: Path, pool, small, fraction, cache, scheduler=None):
    cmd = [sys.executable, "-m", "cli", "select", "--pool", str(pool), "--labeled", str(small["labeled"]),
           "--val", str(small["val"]), "--budget", "5000", "--scorer", "knn-shapley", "--preselect", "top",
           "--fraction", repr(fraction), "--strategy", "coreset", "--seed", "0", "--cache-dir", str(cache), "--json", "-q"]
    if scheduler:
        cmd += ["--scheduler", scheduler]
    env = {**os.environ, "PYTHONPATH": str(python_path)}
    return cmd, env


def old_checkout(ref: str, where: Path) -> Path:
    if not (where / "cli.py").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), ref], check=True,
                       capture_output=True)
    # ``python -m cli`` puts the working directory first on sys.path: the run's cwd is the
    # checkout, and this checks that its ``ads`` and ``cli`` are the ones imported.
    got = subprocess.run([sys.executable, "-c", "import ads, cli; print(ads.__file__); print(cli.__file__)"],
                         cwd=where, env={**os.environ, "PYTHONPATH": str(where)}, capture_output=True,
                         text=True, check=True).stdout.split()
    if not all(Path(f).resolve().is_relative_to(where.resolve()) for f in got):
        raise SystemExit(f"today's path imports {got}, not the checkout {where}")
    return where


MODE_KEYS = {"today (in-process, in memory)": "today", "new, in-process": "inprocess",
             "new, LocalCluster 1 worker": "local1", "new, LocalCluster 2 workers": "local2"}


def features_runs(args, data: Path, small) -> list[dict]:
    rows = []
    old = old_checkout(args.old_ref, data / "old-ads") if args.old_ref else None
    for n in args.sizes:
        pool = write_big_features(data / f"f-pool-{n}.zarr", n)
        fraction = CANDIDATES / n
        modes = [("today (in-process, in memory)", old, None)] if (old and n <= args.old_max) else []
        modes += [("new, in-process", ROOT, None), ("new, LocalCluster 1 worker", ROOT, "local:1"),
                  ("new, LocalCluster 2 workers", ROOT, "local:2")]
        if n > args.cluster1_max:
            modes = [m for m in modes if m[2] != "local:1"]
        modes = [m for m in modes if MODE_KEYS[m[0]] in args.modes]
        for label, code, sched in modes:
            cache = data / "cache-run"
            shutil.rmtree(cache, ignore_errors=True)
            cmd, env = select_cmd(code, pool, small, fraction, cache, sched)
            load0 = os.getloadavg()
            r = run_measured(cmd, env, cwd=code)
            load1 = os.getloadavg()
            shutil.rmtree(cache, ignore_errors=True)
            row = {"n": n, "mode": label, "rc": r["rc"], "wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"],
                   "load": [round(load0[0], 2), round(load1[0], 2)]}
            if r["rc"] == 0:
                sel = json.loads(r["stdout"].strip().splitlines()[-1])
                row["seconds"] = sel["seconds"]
                row["n_candidates"] = sel["n_candidates"]
                row["picks_sha"] = hashlib.sha256("\n".join(p["id"] for p in sel["picked"]).encode()).hexdigest()[:12]
            else:
                row["error"] = r["stderr"].strip().splitlines()[-1] if r["stderr"].strip() else "?"
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
        if not args.keep:
            shutil.rmtree(pool, ignore_errors=True)
    return rows


def _warm():
    import torch  # noqa: F401

    import ads.stages  # noqa: F401


def embed_child(lab, val, pool, mode):
    """(child) Train the CNN (seeded) and time only the pool's embedding pass."""
    import torch

    from ads.embed import EmbedConfig, embed_pool, fit_embedder
    from ads.task import load_task

    task = load_task(pool, lab, val, seed=0)
    model = fit_embedder(task.kind, task.data, task.n_classes, EmbedConfig(epochs=3, seed=0, arch="cnn"), progress=False)
    emb, _ = model.transform(task.data.x[:2])
    runner = None
    if mode.startswith("in-process"):
        torch.set_num_threads(int(mode.split(":")[1]))
    else:
        from ads.distributed import connect

        runner = connect(mode)
        runner.client.run(_warm)  # steady state: workers import torch and ads before the clock starts
    with tempfile.TemporaryDirectory(dir=Path(pool).parent) as td:
        t = time.perf_counter()
        pe = embed_pool(model, task.pool, emb.shape[1], task.n_classes, path=Path(td) / "e.zarr", runner=runner,
                        progress=False)
        secs = time.perf_counter() - t
        h = hashlib.sha256()
        for _s, e, p in pe.iter_blocks():
            h.update(np.ascontiguousarray(e).tobytes())
            h.update(np.ascontiguousarray(p).tobytes())
    if runner is not None:
        runner.close()
    return {"mode": mode, "n": task.pool.n, "embed_s": secs, "images_per_s": task.pool.n / secs,
            "sha": h.hexdigest()[:12], "blocks": len(pe.blocks)}


def image_runs(args, data: Path) -> list[dict]:
    lab, val, pool = write_images(data, args.images)
    rows = []
    for mode in ("in-process:1", "in-process:2", "local:1", "local:2"):
        load0 = os.getloadavg()
        r = run_measured([sys.executable, __file__, "--embed-child", str(lab), str(val), str(pool), mode],
                         {**os.environ, "PYTHONPATH": str(ROOT)})
        if r["rc"] != 0:
            raise SystemExit(f"embedding child {mode} failed: {r['stderr']}")
        row = {**json.loads(r["stdout"].strip().splitlines()[-1]), "peak_rss_mib": r["peak_rss_mib"],
               "load": [round(load0[0], 2), round(os.getloadavg()[0], 2)]}
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- report
def report(args, frows, irows) -> str:
    md = [f"# Scale-out: out-of-core pool stages and Dask ({time.strftime('%Y-%m-%d')})", "",
          f"{platform.machine()}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
          "shared machine (load average before/after each run in the last column). Generated by `benchmarks/scale.py`.", ""]
    if frows:
        md += ["## `ads select` on features pools (128-d float32 on disk)", "",
               "labeled 5,000, validation 500, budget 5,000, `--scorer knn-shapley --preselect top --fraction 50000/N "
               "--strategy coreset`; fresh process and fresh cache per run. *today* = the code before the out-of-core "
               f"change (`{args.old_ref or '3853ae6'}`): the pool's embeddings and probabilities concatenated in memory.", "",
               "| pool | mode | total s | embed s | score s | strategy s | driver peak RSS MiB | vs in-process | same picks | load |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for n in sorted({r["n"] for r in frows}):
            rs = [r for r in frows if r["n"] == n]
            base = next((r for r in rs if r["mode"] == "new, in-process" and r["rc"] == 0), None)
            for r in rs:
                if r["rc"] != 0:
                    md.append(f"| {n:,} | {r['mode']} | failed: {r.get('error', '')[:80]} | | | | {r['peak_rss_mib']:.0f} | | | "
                              f"{r['load'][0]}/{r['load'][1]} |")
                    continue
                s = r["seconds"]
                same = "yes" if base and r["picks_sha"] == base["picks_sha"] else ("-" if r is base else "NO")
                ratio = f"{r['wall_s'] / base['wall_s']:.2f}x" if base else ""
                md.append(f"| {n:,} | {r['mode']} | {r['wall_s']:.1f} | {s.get('embed', 0):.1f} | {s.get('score', 0):.1f} | "
                          f"{s.get('strategy', 0):.1f} | {r['peak_rss_mib']:.0f} | {ratio} | {same if r is not base else 'ref'} | "
                          f"{r['load'][0]}/{r['load'][1]} |")
        md.append("")
    if irows:
        base1 = next(r for r in irows if r["mode"] == "in-process:1")
        md += [f"## Embedding throughput: {irows[0]['n']:,} 28x28 images, small CNN ({irows[0]['blocks']} work blocks)", "",
               "| mode | seconds | images/s | per worker (or thread) | per worker vs in-process 1 thread | "
               "vs in-process, same cores | same bytes | load |",
               "|---|---|---|---|---|---|---|---|"]
        by_mode = {r["mode"]: r for r in irows}
        for r in irows:
            k = int(r["mode"].split(":")[1])
            per = r["images_per_s"] / k
            same = by_mode.get(f"in-process:{k}")
            md.append(f"| {r['mode']} | {r['embed_s']:.1f} | {r['images_per_s']:.0f} | {per:.0f} | "
                      f"{per / base1['images_per_s']:.2f} | {r['images_per_s'] / same['images_per_s']:.2f} | "
                      f"{'yes' if r['sha'] == base1['sha'] else 'NO'} | {r['load'][0]}/{r['load'][1]} |")
        md.append("")
    md += extrapolation(frows, irows)
    return "\n".join(md) + "\n"


def merge_seconds_per_block(n=100_000_000, rows=32_768, k=50_000, blocks=300) -> float:
    """The client's cost of merging one block's pre-selection buffer (``--preselect top``,
    ``k`` candidates) into the running top-k, as the Dask runner does when a task returns."""
    from ads.stream import CandidatePlan

    plan = CandidatePlan("top", 5000, k / n, np.ones(10) / 10, n)
    rng = np.random.default_rng(0)
    parts = [plan.summarize(i * rows, rng.random(rows), rng.integers(0, 10, rows), np.ones(rows, bool))
             for i in range(blocks)]
    total = plan.new()
    t = time.perf_counter()
    for part in parts:
        total.merge(part)
    return (time.perf_counter() - t) / blocks


def extrapolation(frows, irows, n=100_000_000, workers=32) -> list[str]:
    """A 100M-row pool on a 32-worker cluster, as arithmetic on the measured rows."""
    one = [r for r in frows if r["mode"] == "new, LocalCluster 1 worker" and r["rc"] == 0]
    inp = sorted((r for r in frows if r["mode"] == "new, in-process" and r["rc"] == 0), key=lambda r: r["n"])
    if not one or len(inp) < 2:
        return []
    w = max(one, key=lambda r: r["n"])
    rate = w["n"] / (w["seconds"]["embed"] + w["seconds"]["score"])
    big, mid = inp[-1], inp[-2]
    open_per_row = big["seconds"]["load"] / big["n"]
    slope = (big["seconds"]["strategy"] - mid["seconds"]["strategy"]) / (big["n"] - mid["n"])
    strategy = big["seconds"]["strategy"] + slope * (n - big["n"])
    fixed = big["seconds"]["total"] - sum(big["seconds"][k] for k in ("load", "embed", "score", "strategy"))
    rows_per_block = (16 << 20) // (128 * 4)
    merge = merge_seconds_per_block(n, rows_per_block) * math.ceil(n / rows_per_block)
    pool_stage = n / (workers * rate)
    client_open = open_per_row * n
    total = client_open + max(pool_stage, merge) + strategy + fixed
    gb = n * 128 * 4 / 1e9
    md = [f"## Extrapolation: {n / 1e6:.0f}M x 128 features on {workers} workers (arithmetic, not measured)", "",
          f"- pool stages (embed + score + pre-select, on the workers): one worker did {w['n']:,} rows in "
          f"{w['seconds']['embed']:.1f} + {w['seconds']['score']:.1f} s = {rate:,.0f} rows/s; "
          f"{n:,} / ({workers} x {rate:,.0f}) = **{pool_stage:.0f} s**, if each worker gets a core and the shared "
          f"filesystem delivers {gb:.0f} GB in that time ({gb * 1e3 / pool_stage:,.0f} MB/s);",
          f"- the client's merge of the {math.ceil(n / rows_per_block):,} block buffers (measured here: "
          f"{merge / math.ceil(n / rows_per_block) * 1e3:.2f} ms each) = {merge:.1f} s, overlapped with the workers;",
          f"- the client's store open and validation (ids, shapes, duplicate-id check; serial, O(N)): "
          f"{big['seconds']['load']:.1f} s at {big['n']:,} rows -> **{client_open:.0f} s**;",
          f"- the strategy on the candidates (reads their rows across the pool; linear through the "
          f"{mid['n']:,} and {big['n']:,} rows runs): {strategy:.0f} s; valuing on the client: {fixed:.1f} s (training the probability head "
          "is inside the embed stage above, so the pool-stage figure is pessimistic);",
          f"- total ~ {client_open:.0f} + {max(pool_stage, merge):.0f} + {strategy:.0f} + {fixed:.0f} = **{total:.0f} s** "
          f"(~{total / 60:.1f} min); the client's store validation is then the largest part."]
    if irows:
        r1 = next((r for r in irows if r["mode"] == "local:1"), None)
        if r1:
            md.append(f"- an image pool of {n / 1e6:.0f}M 28x28 images: one worker embeds {r1['images_per_s']:,.0f} images/s "
                      f"(small CNN) -> {n:,} / ({workers} x {r1['images_per_s']:,.0f}) = {n / (workers * r1['images_per_s']):.0f} s "
                      "for the embedding pass.")
    return md + [""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,5000000,20000000")
    ap.add_argument("--images", type=int, default=1_000_000, help="image pool size (0: none)")
    ap.add_argument("--no-images", action="store_true")
    ap.add_argument("--no-features", action="store_true")
    ap.add_argument("--old-ref", default="3853ae6", help="today's path (git ref); '' to skip")
    ap.add_argument("--old-max", type=int, default=5_000_000, help="largest pool today's path is run on")
    ap.add_argument("--cluster1-max", type=int, default=5_000_000, help="largest pool run on a 1-worker cluster")
    ap.add_argument("--modes", default="today,inprocess,local1,local2",
                    help="features runs to do (a rerun replaces only those rows of scale.json)")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "ads-scale")
    ap.add_argument("--keep", action="store_true", help="keep the generated pools")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--report-only", action="store_true", help="rewrite scale.md from scale.json, run nothing")
    ap.add_argument("--embed-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.embed_child:
        print(json.dumps(embed_child(*args.embed_child)))
        return
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.modes = set(args.modes.split(","))
    if args.modes - set(MODE_KEYS.values()):
        raise SystemExit(f"--modes: unknown {sorted(args.modes - set(MODE_KEYS.values()))}")
    args.data.mkdir(parents=True, exist_ok=True)
    prev = {}
    res_json = args.results / "scale.json"
    if res_json.exists():
        prev = json.loads(res_json.read_text())
    frows = prev.get("features", [])
    irows = prev.get("images", [])
    if not args.no_features and not args.report_only:
        small = write_small_features(args.data)
        new = features_runs(args, args.data, small)
        done = {(x["n"], x["mode"]) for x in new}
        order = list(MODE_KEYS)
        frows = sorted([r for r in frows if (r["n"], r["mode"]) not in done] + new,
                       key=lambda r: (r["n"], order.index(r["mode"]) if r["mode"] in order else len(order)))
    if not args.no_images and args.images and not args.report_only:
        irows = image_runs(args, args.data)
    text = report(args, frows, irows)
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "scale.md").write_text(text)
    res_json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "features": frows, "images": irows},
                                   indent=1))


if __name__ == "__main__":
    main()
