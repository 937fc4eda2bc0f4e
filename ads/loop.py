"""The iterative labeling loop, crash-safe and resumable.

Each round trains the network from scratch on the labeled set (early-stopped on the
validation store), reports test accuracy, embeds, values, scores, pre-selects, picks a
batch, gets its labels from the oracle and adds them to the labeled set. After the last
round a final model is trained and evaluated, so the accuracy curve ends at the final
labeled count.

State lives in ``RUN/state.json`` and is replaced atomically (temp file + rename) after
every stage: "select" (a batch is being chosen; redone on resume, deterministically) and
"label" (the batch is fixed and waits for labels). Labels are added to the state in the
same atomic write that moves the loop to the next round, so a kill at any moment loses no
label and never labels a point twice. ``RUN/rounds.jsonl`` (one JSON object per round) is
rewritten from the state after every round.

Oracles: "hidden" reads the pool store's hidden true labels (simulation); "external"
writes ``RUN/round-K/to_label.csv`` and stops; ``ads label RUN --import labels.csv``
supplies the labels and continues.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ads.embed import EmbedConfig
from ads.errors import DataError, ParameterError, StoreError, check_int
from ads.pool import Pool, atomic_write_text, open_pool
from ads.select import (
    LabeledData,
    _noop,
    check_classes_covered,
    check_compatible,
    check_select_params,
    embed_all,
    labeled_arrays,
    rank_and_pick,
)

STATE = "state.json"
ROUNDS = "rounds.jsonl"


@dataclass
class LoopConfig:
    pool: str
    labeled: str
    val: str
    test: str | None
    rounds: int
    budget: int
    strategy: str = "coreset"
    fraction: float = 0.1
    k: int = 10
    seed: int = 0
    oracle: str = "hidden"
    scorer: str = "knn-shapley"
    aggregate: str = "max"
    top_m: int = 10
    dvrl_iterations: int = 2000
    arch: str = "auto"
    epochs: int = 30
    device: str = "auto"


class Run:
    """A loop's working directory and its state."""

    def __init__(self, workdir):
        self.dir = Path(workdir)

    @property
    def state_path(self) -> Path:
        return self.dir / STATE

    def exists(self) -> bool:
        return self.state_path.exists()

    def load(self) -> dict:
        if not self.exists():
            raise StoreError(f"run directory {str(self.dir)!r} has no {STATE}; start it with 'ads loop --workdir {self.dir}'.")
        try:
            return json.loads(self.state_path.read_text())
        except json.JSONDecodeError as e:
            raise StoreError(f"{str(self.state_path)!r} is not valid JSON ({e}).") from None

    def save(self, state: dict) -> None:
        atomic_write_text(self.state_path, json.dumps(state, indent=1))

    def write_rounds(self, state: dict) -> None:
        atomic_write_text(self.dir / ROUNDS, "".join(json.dumps(r) + "\n" for r in state["records"]))


def start(config: LoopConfig, workdir, *, log=_noop) -> Run:
    """Validate the configuration and stores, and create the run directory's state."""
    run = Run(workdir)
    if run.exists():
        raise ParameterError(f"{str(run.state_path)!r} exists: a run is in progress there; pass --resume to continue it.")
    check_int(config.rounds, "rounds", "ads loop", min_value=1)
    if config.oracle not in ("hidden", "external"):
        raise ParameterError(f"The 'oracle' parameter of ads loop must be 'hidden' or 'external'. Got {config.oracle!r}.")
    stores = _open_stores(config)
    pool = stores["pool"]
    check_select_params(config.budget, config.fraction, pool.n, pool.path)
    if config.rounds * config.budget > pool.n:
        raise ParameterError(
            f"rounds x budget ({config.rounds} x {config.budget}) is larger than the pool {config.pool!r} ({pool.n} points)."
        )
    if config.oracle == "hidden" and pool.hidden("y") is None:
        raise StoreError(f"pool {config.pool!r} has no hidden labels (hidden/y); use --oracle external.")
    import strategies
    from ads.select import SCORERS

    strategies.get(config.strategy)
    if config.scorer not in SCORERS:
        raise ParameterError(f"The 'scorer' parameter of ads loop must be one of {list(SCORERS)}. Got {config.scorer!r}.")
    check_int(config.dvrl_iterations, "dvrl_iterations", "ads loop", min_value=1)
    check_int(config.top_m, "top_m", "ads loop", min_value=1)
    from ads.regress import AGGREGATIONS

    if config.aggregate not in AGGREGATIONS:
        raise ParameterError(f"The 'aggregate' parameter of ads loop must be one of {list(AGGREGATIONS)}. Got {config.aggregate!r}.")
    EmbedConfig(arch=config.arch, epochs=config.epochs, device=config.device).validate()
    run.dir.mkdir(parents=True, exist_ok=True)
    state = {"version": 1, "config": asdict(config), "round": 0, "stage": "select", "batch": None,
             "pending": None, "added": [], "records": []}
    run.save(state)
    log(f"started run {run.dir}: {config.rounds} rounds of {config.budget}, strategy {config.strategy}, fraction {config.fraction:g}")
    return run


def _open_stores(config) -> dict:
    c = config if isinstance(config, dict) else asdict(config)
    pool = open_pool(c["pool"], role="pool")
    stores = {"pool": pool, "labeled": open_pool(c["labeled"], role="labeled store"),
              "val": open_pool(c["val"], role="validation store")}
    if c.get("test"):
        stores["test"] = open_pool(c["test"], role="test store")
    for role, store in stores.items():
        if role != "pool":
            check_compatible(pool, store, f"{role} store")
    return stores


def _labeled_data(stores, added) -> tuple[LabeledData, np.ndarray]:
    """Initial labeled rows plus the pool points labeled so far; and the pool rows used."""
    pool = stores["pool"]
    x, y, ids = labeled_arrays(stores["labeled"], "labeled store")
    xv, yv, _ = labeled_arrays(stores["val"], "validation store")
    rows = np.empty(0, dtype=np.int64)
    if added:
        index = {pid: i for i, pid in enumerate(pool.ids())}
        rows = np.array([index[a[0]] for a in added], dtype=np.int64)
        order = np.argsort(rows)
        xa = np.empty((rows.size, *pool.item_shape), dtype=pool.x.dtype)
        xa[order] = np.asarray(pool.x.oindex[rows[order]])
        x = np.concatenate([x, xa])
        y = np.concatenate([y, np.array([a[1] for a in added], dtype=np.int64)])
        ids = np.concatenate([ids, np.array([a[0] for a in added])])
    return LabeledData(x, y, ids, xv, yv, "validation store"), rows


def _train_and_pick(state, stores, *, progress, log):
    """Train the network on the current labeled set; evaluate; pick the next batch (or,
    after the last round, only evaluate). Returns (record, batch ids)."""
    import strategies

    c = state["config"]
    rnd = state["round"]
    pool = stores["pool"]
    data, rows = _labeled_data(stores, state["added"])
    check_classes_covered(data.y, pool.classes, f"labeled set of round {rnd}")
    seconds = {}
    t = time.perf_counter()
    test = stores.get("test")
    test_x = test_y = None
    if test is not None:
        test_x, test_y, _ = labeled_arrays(test, "test store")
    cfg = EmbedConfig(arch=c["arch"], epochs=c["epochs"], device=c["device"], seed=c["seed"] + rnd)
    em = embed_all(pool.kind, len(pool.classes), data, pool if rnd < c["rounds"] else None, cfg, cache_root=None,
                   progress=progress, log=log, test_x=test_x)
    seconds["train_embed"] = time.perf_counter() - t
    acc = float((em.proba_test.argmax(1) == test_y).mean()) if test is not None else None
    record = {"round": rnd, "n_labeled": int(data.y.size), "test_accuracy": acc,
              "val_accuracy": em.val_accuracy, "seconds": seconds, "picked": []}
    log(f"round {rnd}: {data.y.size} labeled, test accuracy {acc if acc is None else round(acc, 4)}")
    if rnd >= c["rounds"]:
        return record, []
    exclude = np.zeros(pool.n, dtype=bool)
    exclude[rows] = True
    idx, scores, n_cand = rank_and_pick(
        em, data, budget=c["budget"], fraction=c["fraction"], strategy=strategies.get(c["strategy"]), k=c["k"],
        seed=c["seed"] + rnd, exclude=exclude, scorer=c.get("scorer", "knn-shapley"),
        aggregate=c.get("aggregate", "max"), top_m=c.get("top_m", 10),
        dvrl_params={"iterations": c.get("dvrl_iterations", 2000)}, seconds=seconds, progress=progress, log=log)
    ids = pool.ids()[idx]
    record.update(picked=[str(i) for i in ids], n_candidates=n_cand)
    src = pool.hidden("source")
    if src is not None:
        tags, counts = np.unique(src[idx], return_counts=True)
        record["sources"] = {str(t): int(n) for t, n in zip(tags, counts)}
    return record, [str(i) for i in ids]


def resume(workdir, *, progress=True, log=_noop, max_rounds=None) -> dict:
    """Run (or continue) the loop until it is done or waits for external labels.

    Returns the final state. ``max_rounds`` stops after that many rounds (for tests).
    """
    run = Run(workdir)
    state = run.load()
    stores = _open_stores(state["config"])
    c = state["config"]
    pool = stores["pool"]
    done_rounds = 0
    while state["stage"] != "done":
        if state["stage"] == "select":
            record, batch = _train_and_pick(state, stores, progress=progress, log=log)
            if state["round"] >= c["rounds"]:
                state["records"].append(record)
                state["stage"] = "done"
                run.save(state)
                run.write_rounds(state)
                break
            state.update(stage="label", batch=batch, pending=record)
            run.save(state)
        if state["stage"] == "label":
            if c["oracle"] == "external":
                path = _write_to_label(run, state, pool)
                log(f"round {state['round']}: label the {len(state['batch'])} points in {path}, then run "
                    f"'ads label {run.dir} --import LABELS.csv'")
                return state
            hidden = pool.hidden("y")
            index = {pid: i for i, pid in enumerate(pool.ids())}
            t = time.perf_counter()
            labels = [int(hidden[index[b]]) for b in state["batch"]]
            _add_labels(run, state, labels, time.perf_counter() - t)
            done_rounds += 1
            if max_rounds is not None and done_rounds >= max_rounds:
                return state
    log(f"run {run.dir} is done: {len(state['added'])} points labeled in {c['rounds']} rounds")
    return state


def _add_labels(run: Run, state: dict, labels: list[int], seconds: float) -> None:
    record = state["pending"]
    record["seconds"]["label"] = seconds
    already = {a[0] for a in state["added"]}
    for pid, lab in zip(state["batch"], labels):
        if pid in already:  # cannot happen: batches exclude labeled points; guard the invariant
            raise StoreError(f"point {pid!r} would be labeled twice; {str(run.state_path)!r} is inconsistent.")
        state["added"].append([pid, int(lab), state["round"]])
    state["records"].append(record)
    state.update(round=state["round"] + 1, stage="select", batch=None, pending=None)
    run.save(state)  # the labels and the move to the next round land together
    run.write_rounds(state)


def _write_to_label(run: Run, state: dict, pool: Pool) -> Path:
    path = run.dir / f"round-{state['round']}" / "to_label.csv"
    lines = ["id"] + list(state["batch"])
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def import_labels(workdir, labels_csv, *, log=_noop) -> dict:
    """Read ``id,label`` (label = class name or index) for the waiting batch and add them."""
    run = Run(workdir)
    state = run.load()
    if state["stage"] != "label":
        raise ParameterError(f"run {str(run.dir)!r} is not waiting for labels (stage {state['stage']!r}).")
    pool = open_pool(state["config"]["pool"], role="pool", validate=False)
    path = Path(labels_csv)
    if not path.exists():
        raise StoreError(f"labels file {str(path)!r} does not exist.")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"id", "label"} <= set(reader.fieldnames):
            raise DataError(f"labels file {str(path)!r} must have a header with columns id,label. Got {reader.fieldnames}.")
        given = {}
        for n, row in enumerate(reader, start=2):
            pid, lab = row["id"], (row["label"] or "").strip()
            if pid in given:
                raise DataError(f"labels file {str(path)!r} line {n}: id {pid!r} appears twice.")
            given[pid] = (n, lab)
    batch = state["batch"]
    missing = [b for b in batch if b not in given]
    extra = [g for g in given if g not in set(batch)]
    if missing:
        raise DataError(f"labels file {str(path)!r} lacks {len(missing)} of the batch's ids, e.g. {missing[0]!r}.")
    if extra:
        raise DataError(f"labels file {str(path)!r} has ids not in the batch of round {state['round']}, e.g. {extra[0]!r}.")
    classes = pool.classes
    labels = []
    for b in batch:
        n, lab = given[b]
        if lab in classes:
            labels.append(classes.index(lab))
        elif lab.lstrip("-").isdigit() and 0 <= int(lab) < len(classes):
            labels.append(int(lab))
        else:
            raise DataError(f"labels file {str(path)!r} line {n}: label {lab!r} is not a class name or index 0..{len(classes) - 1}.")
    _add_labels(run, state, labels, 0.0)
    log(f"imported {len(labels)} labels for round {state['round'] - 1}")
    return state


def read_rounds(workdir) -> list[dict]:
    path = Path(workdir) / ROUNDS
    if not path.exists():
        raise StoreError(f"run directory {str(workdir)!r} has no {ROUNDS}.")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise StoreError(f"{str(path)!r} is not valid JSON lines ({e}).") from None


def report(workdirs, out=None) -> str:
    """Text table of accuracy vs labeled count and seconds per batch; optional PNG figure."""
    runs = [(str(w), read_rounds(w)) for w in workdirs]
    lines = [f"{'run':30s} {'round':>5s} {'labeled':>8s} {'test acc':>9s} {'sec/batch':>10s}"]
    for name, recs in runs:
        for r in recs:
            acc = "-" if r.get("test_accuracy") is None else f"{r['test_accuracy']:.4f}"
            secs = sum(r["seconds"].values())
            lines.append(f"{name[-30:]:30s} {r['round']:5d} {r['n_labeled']:8d} {acc:>9s} {secs:10.2f}")
    if out is not None:
        _plot(runs, out)
    return "\n".join(lines) + "\n"


def _plot(runs, out) -> None:
    import os
    import tempfile

    import matplotlib

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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


__all__ = ["LoopConfig", "Run", "start", "resume", "import_labels", "report", "read_rounds"]
