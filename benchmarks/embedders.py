"""Embedders compared (issue 14): the classifier head's test accuracy on Fashion-MNIST at
500 / 1,000 / 2,000 / 5,000 labels for the small CNN and ResNet-18 trained from scratch and
the frozen ImageNet EfficientNet-Lite0 with a linear head; embedding throughput on this
CPU; and one ``ads loop`` of 3 rounds on the cheap-Fashion pool with each embedder under the
default configuration. Not a test.

Data: Fashion-MNIST (Debian's ``dataset-fashion-mnist``): labeled sets drawn stratified from
the 60,000 training images (nested: the 500 are in the 1,000, ...), validation 500 other
training images, test = the 10,000 test images. Every embedder trains with ads' defaults
(``EmbedConfig``: Adam, early stopping on validation accuracy, patience 5; the pretrained
head: 10x the epochs, patience 10); ``--epochs`` caps the networks' epochs (ResNet-18 from
scratch costs ~1 GFLOP per 28x28 image and step on this 2-core CPU).

Input-size ablation (``--sizes``): the pretrained backbone at several input resolutions at
1,000 labels (Fashion-MNIST images are 28x28; the weights were trained at 224): accuracy and
images/s, which sets ``auto_input_size``.

Throughput: inference images/s over 4,096 test images (embedding + probabilities), torch
threads = the machine's cores, after one warm-up batch.

Loop: ``ads data cheap-mnist --task fashion`` (a pool of Fashion-MNIST with junk, label
noise and off-task images; labeled/val/test as built), then ``ads loop --rounds 3`` with
``--embedder cnn|resnet18|efficientnet-lite0``, budget 200 per round, default strategy and
scorer; the test accuracy of each round and the seconds.

    python benchmarks/embedders.py                       # everything (~40 min on 2 cores)
    python benchmarks/embedders.py --only sizes          # the input-size ablation
    python benchmarks/embedders.py --only accuracy,throughput --labels 500,1000

Tables on stdout and in RESULTS/embedders.{md,json}; a part not run keeps its saved rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

EMBEDDERS = ("cnn", "resnet18", "efficientnet-lite0")
PARTS = ("sizes", "accuracy", "throughput", "loop")


def fashion():
    from ads.datasets.cheap import _load_fashion

    d = _load_fashion()
    (xtr, ytr), (xte, yte) = d["train"], d["test"]
    return xtr[..., None], ytr, xte[..., None], yte


def nested_labels(ytr, sizes, n_val, seed):
    """Nested stratified labeled sets (the first n of one class-balanced order) and a
    disjoint validation set."""
    rng = np.random.default_rng(seed)
    classes = np.unique(ytr)
    per = [rng.permutation(np.flatnonzero(ytr == c)) for c in classes]
    val = np.concatenate([p[: n_val // len(classes)] for p in per])
    rest = [p[n_val // len(classes):] for p in per]
    order = np.stack([r[: max(sizes) // len(classes) + 1] for r in rest], axis=1).reshape(-1)  # round-robin over classes
    return {n: order[:n] for n in sizes}, val


def fit(arch, x, y, xv, yv, *, epochs, input_size=0, seed=0, cache=None):
    from ads.embed import EmbedConfig, fit_embedder
    from ads.task import LabeledData

    cfg = EmbedConfig(arch=arch, epochs=epochs, seed=seed, input_size=input_size)
    data = LabeledData(x, y, np.arange(len(y)).astype(str), xv, yv, "store")
    return fit_embedder("images", data, 10, cfg, progress=False, feature_cache=cache)


def accuracy(model, xte, yte, batch=4096):
    pred = np.concatenate([model.predict_proba(xte[s : s + batch]).argmax(1) for s in range(0, len(xte), batch)])
    return float((pred == yte).mean())


def throughput(model, x, n=4096):
    x = x[:n]
    model.transform(x[:128])
    t = time.perf_counter()
    for s in range(0, len(x), 1024):
        model.transform(x[s : s + 1024])
    return len(x) / (time.perf_counter() - t)


# ---------------------------------------------------------------- parts
def run_sizes(args, data, out):
    xtr, ytr, xte, yte = data
    sets, val = nested_labels(ytr, [1000], 500, args.seed)
    lab = sets[1000]
    test = np.arange(len(yte)) if args.sizes_test <= 0 else np.random.default_rng(1).permutation(len(yte))[: args.sizes_test]
    rows = []
    for s in [int(v) for v in args.sizes.split(",")]:
        t = time.perf_counter()
        m = fit("efficientnet-lite0", xtr[lab], ytr[lab], xtr[val], ytr[val], epochs=args.epochs, input_size=s, seed=args.seed)
        acc = accuracy(m, xte[test], yte[test])
        secs = time.perf_counter() - t
        ips = throughput(m, xte, n=1024)
        rows.append({"input_size": s, "test_accuracy": acc, "val_accuracy": m.val_accuracy_, "images_per_s": ips,
                     "seconds": secs, "n_test": int(test.size), "layer": m.layer_, "layer_val_accuracy": m.layer_val_accuracy_})
        print(f"  size {s:4d}: test acc {acc:.4f}  val {m.val_accuracy_:.4f}  {ips:7.1f} img/s  ({secs:.0f} s)", flush=True)
    out["sizes"] = rows


def run_accuracy(args, data, out):
    from ads.pretrained import HEAD_EPOCHS

    xtr, ytr, xte, yte = data
    sizes = [int(v) for v in args.labels.split(",")]
    sets, val = nested_labels(ytr, sizes, 500, args.seed)
    rows = [r for r in out.get("accuracy", []) if r["embedder"] not in args.embedders or r["n_labels"] not in sizes]
    with tempfile.TemporaryDirectory() as cache:
        for arch in args.embedders:
            for n in sizes:
                lab = sets[n]
                t = time.perf_counter()
                m = fit(arch, xtr[lab], ytr[lab], xtr[val], ytr[val], epochs=args.epochs, seed=args.seed,
                        cache=Path(cache) if arch == "efficientnet-lite0" else None)
                train_s = time.perf_counter() - t
                acc = accuracy(m, xte, yte)
                rows.append({"embedder": arch, "n_labels": n, "test_accuracy": acc, "val_accuracy": m.val_accuracy_,
                             "epochs_run": int(m.epochs_run_), "max_epochs": HEAD_EPOCHS * args.epochs if arch == "efficientnet-lite0" else args.epochs,
                             "train_seconds": train_s,
                             "layer": getattr(m, "layer_", None),
                             "input_size": getattr(m, "input_size_", 28)})
                print(f"  {arch:18s} {n:5d} labels: test acc {acc:.4f}  (val {m.val_accuracy_:.4f}, "
                      f"{m.epochs_run_} epochs, {train_s:.0f} s)", flush=True)
                out["accuracy"] = rows
                args.save()  # row by row: a long part keeps what it measured


def run_throughput(args, data, out):
    import torch

    xtr, ytr, xte, yte = data
    sets, val = nested_labels(ytr, [500], 500, args.seed)
    lab = sets[500]
    rows = []
    for arch in args.embedders:
        m = fit(arch, xtr[lab], ytr[lab], xtr[val], ytr[val], epochs=2, seed=args.seed)
        ips = throughput(m, xte)
        rows.append({"embedder": arch, "input_size": getattr(m, "input_size_", 28), "images_per_s": ips,
                     "threads": torch.get_num_threads()})
        print(f"  {arch:18s} {ips:8.1f} img/s", flush=True)
    out["throughput"] = rows


def run_loop(args, out):
    rows = [r for r in out.get("loop", []) if r["embedder"] not in args.embedders]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "cli", "data", "cheap-mnist", str(tmp / "d"), "--task", "fashion",
                        "--pool", str(args.loop_pool), "--test", "2000", "-q"], check=True, cwd=ROOT, env=env)
        for arch in args.embedders:
            run = tmp / f"run-{arch}"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cli", "loop", "--workdir", str(run), "--pool", str(tmp / "d/pool.zarr"),
                            "--labeled", str(tmp / "d/labeled.zarr"), "--val", str(tmp / "d/val.zarr"),
                            "--test", str(tmp / "d/test.zarr"), "--rounds", "3", "--budget", str(args.loop_budget),
                            "--embedder", arch, "--epochs", str(args.epochs), "-q"],
                           check=True, cwd=ROOT, env=env)
            secs = time.perf_counter() - t
            recs = [json.loads(line) for line in (run / "rounds.jsonl").read_text().splitlines() if line.strip()]
            accs = [r.get("test_accuracy") for r in recs]
            rows.append({"embedder": arch, "test_accuracy": accs, "n_labeled": [r.get("n_labeled") for r in recs],
                         "seconds": secs})
            print(f"  {arch:18s} test accuracy by round {[round(a, 4) for a in accs]}  ({secs:.0f} s)", flush=True)
    out["loop"] = rows


# ---------------------------------------------------------------- report
def markdown(out) -> str:
    m = out.get("meta", {})
    lines = ["# Embedders (benchmarks/embedders.py)", "",
             f"{m.get('machine', '')}; torch {m.get('torch', '')}; seed {m.get('seed', 0)}; epochs: at most each row's "
             f"cap (ads' default 30; the pretrained head 10x that). Fashion-MNIST 28x28 grey; validation 500; test 10,000 (loop: 2,000).", ""]
    if out.get("sizes"):
        lines += ["## Input size of the pretrained backbone (1,000 labels)", "",
                  "| input px | test accuracy | val accuracy | images/s | seconds (fit + test) |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['input_size']} | {r['test_accuracy']:.4f} | {r['val_accuracy']:.4f} | {r['images_per_s']:.0f} | "
                  f"{r['seconds']:.0f} |" for r in out["sizes"]]
        lines += ["", f"(test accuracy on {out['sizes'][0]['n_test']:,} test images)", ""]
    if out.get("accuracy"):
        acc = out["accuracy"]
        ns = sorted({r["n_labels"] for r in acc})
        archs = [a for a in EMBEDDERS if any(r["embedder"] == a for r in acc)]
        by = {(r["embedder"], r["n_labels"]): r for r in acc}
        lines += ["## Test accuracy of the classifier head", "",
                  "| embedder | " + " | ".join(f"{n:,} labels" for n in ns) + " |", "|---|" + "---:|" * len(ns)]
        for a in archs:
            lines.append(f"| {a} | " + " | ".join(f"{by[(a, n)]['test_accuracy']:.4f}" if (a, n) in by else "" for n in ns) + " |")
        base = "cnn"
        if any(r["embedder"] == base for r in acc):
            lines += ["", "Ratio to the from-scratch CNN (accuracy / CNN's accuracy):", "",
                      "| embedder | " + " | ".join(f"{n:,}" for n in ns) + " |", "|---|" + "---:|" * len(ns)]
            for a in archs:
                lines.append(f"| {a} | " + " | ".join(
                    f"{by[(a, n)]['test_accuracy'] / by[(base, n)]['test_accuracy']:.3f}" if (a, n) in by and (base, n) in by
                    else "" for n in ns) + " |")
        lines += ["", "Training seconds (embedding the labeled + validation images included):", "",
                  "| embedder | " + " | ".join(f"{n:,}" for n in ns) + " |", "|---|" + "---:|" * len(ns)]
        for a in archs:
            lines.append(f"| {a} | " + " | ".join(
                f"{by[(a, n)]['train_seconds']:.0f} ({by[(a, n)]['epochs_run']} of {by[(a, n)].get('max_epochs', m.get('epochs'))} ep)" if (a, n) in by else "" for n in ns) + " |")
        lines.append("")
    if out.get("throughput"):
        lines += ["## Embedding throughput (inference: embeddings + probabilities)", "",
                  "| embedder | input px | images/s | torch threads |", "|---|---:|---:|---:|"]
        lines += [f"| {r['embedder']} | {r['input_size']} | {r['images_per_s']:.0f} | {r['threads']} |" for r in out["throughput"]]
        lines.append("")
    if out.get("loop"):
        lines += ["## ads loop, 3 rounds on the cheap-Fashion pool (default configuration)", "",
                  f"Pool {m.get('loop_pool', '')}, budget {m.get('loop_budget', '')} per round.", "",
                  "| embedder | labeled per round | test accuracy per round | seconds |", "|---|---|---|---:|"]
        lines += [f"| {r['embedder']} | {', '.join(str(n) for n in r['n_labeled'])} | "
                  f"{', '.join(f'{a:.4f}' for a in r['test_accuracy'])} | {r['seconds']:.0f} |" for r in out["loop"]]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(PARTS), help=f"parts to run, of {','.join(PARTS)}")
    ap.add_argument("--embedders", default=",".join(EMBEDDERS))
    ap.add_argument("--labels", default="500,1000,2000,5000")
    ap.add_argument("--sizes", default="32,64,96,128,224", help="input sizes of the ablation")
    ap.add_argument("--sizes-test", type=int, default=2000, help="test images in the ablation (0: all 10,000)")
    ap.add_argument("--epochs", type=int, default=30, help="network epochs at most (ads' default 30)")
    ap.add_argument("--loop-pool", type=int, default=6000)
    ap.add_argument("--loop-budget", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    args.embedders = [a for a in args.embedders.split(",") if a]
    parts = [p for p in args.only.split(",") if p]
    bad = [p for p in parts if p not in PARTS] + [a for a in args.embedders if a not in EMBEDDERS]
    if bad:
        ap.error(f"unknown part or embedder: {', '.join(bad)}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "embedders.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    args.save = lambda: path.write_text(json.dumps(out, indent=1))
    if not args.report_only:
        import torch

        out["meta"] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
                       "seed": args.seed, "epochs": args.epochs, "loop_pool": args.loop_pool, "loop_budget": args.loop_budget}
        data = fashion() if set(parts) - {"loop"} else None
        for p in parts:
            print(f"== {p}", flush=True)
            if p == "sizes":
                run_sizes(args, data, out)
            elif p == "accuracy":
                run_accuracy(args, data, out)
            elif p == "throughput":
                run_throughput(args, data, out)
            else:
                run_loop(args, out)
            path.write_text(json.dumps(out, indent=1))
    md = markdown(out)
    (args.out / "embedders.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
