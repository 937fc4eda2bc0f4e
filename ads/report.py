"""Tables and figures of loop runs (``ads report``). Plotting needs matplotlib (the
``plot`` extra, installed by the README's setup); the loop itself never imports it."""

from __future__ import annotations

import json
from pathlib import Path

from ads._io import atomic_file
from ads.errors import MissingDependencyError, StoreError

ROUNDS = "rounds.jsonl"


def read_rounds(workdir) -> list[dict]:
    path = Path(workdir) / ROUNDS
    if not path.exists():
        raise StoreError(f"run directory {str(workdir)!r} has no {ROUNDS}.")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise StoreError(f"{str(path)!r} is not valid JSON lines ({e}).") from None


def report(workdirs, out=None) -> str:
    """Text table of accuracy vs labeled count and seconds per batch; with ``out``, also
    the figure (see :func:`plot`)."""
    runs = [(str(w), read_rounds(w)) for w in workdirs]
    lines = [f"{'run':30s} {'round':>5s} {'labeled':>8s} {'bought':>7s} {'rejected':>8s} {'test acc':>9s} {'sec/batch':>10s}"]
    for name, recs in runs:
        for r in recs:
            acc = "-" if r.get("test_accuracy") is None else f"{r['test_accuracy']:.4f}"
            secs = sum(r["seconds"].values())
            bought, rejected = r.get("n_bought", "-"), r.get("n_rejected", "-")
            lines.append(f"{name[-30:]:30s} {r['round']:5d} {r['n_labeled']:8d} {bought:>7} {rejected:>8} {acc:>9s} {secs:10.2f}")
    if not any(recs for _, recs in runs):
        lines.append("(no rounds recorded yet)")
    table = "\n".join(lines) + "\n"
    if out is not None:
        _plot(runs, out)
    return table


def plot(workdirs, out) -> None:
    """PNG figure: test accuracy vs labeled count, and seconds per round."""
    _plot([(str(w), read_rounds(w)) for w in workdirs], out)


def _plot(runs, out) -> None:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("ads report --out needs matplotlib: pip install 'ads[plot]' (the table needs nothing).") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, recs in runs:
        label = Path(name).name or name
        pts = [(r["n_labeled"], r["test_accuracy"]) for r in recs if r.get("test_accuracy") is not None]
        if pts:
            a1.plot(*zip(*pts), marker="o", label=label)
        sel = [r for r in recs if r["picked"]]
        a2.plot([r["round"] for r in sel], [sum(r["seconds"].values()) for r in sel], marker="o", label=label)
    a1.set(xlabel="labeled points", ylabel="test accuracy", title="accuracy vs labeled")
    a2.set(xlabel="round", ylabel="seconds per batch", title="time per round")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_file(out) as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)


