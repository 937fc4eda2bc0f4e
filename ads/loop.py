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
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ads._io import atomic_write_text
from ads._lock import DEFAULT_TIMEOUT, RunLock
from ads._validation import check_budget, check_choice, check_fraction, check_int, check_percent, check_seed
from ads.embed import EmbedConfig, embed_pool, fit_embedder
from ads.errors import DataError, ParameterError, StoreError
from ads.pool import Pool, open_pool
from ads.report import ROUNDS, read_rounds, report  # noqa: F401 (re-exported)
from ads.select import rank_and_pick
from ads.task import LabeledData, check_classes_covered, labeled_arrays, load_task

logger = logging.getLogger(__name__)

STATE = "state.json"
_OWNER = "ads loop"
ORACLES = ("hidden", "external")


@dataclass
class LoopConfig:
    """What a run needs to be resumed anywhere: store paths (absolute), sizes, seed, and
    the parts by name with their parameters (resolved into objects at the edge)."""

    pool: str
    labeled: str
    val: str | None
    test: str | None
    rounds: int
    budget: int
    strategy: str = "coreset"
    fraction: float = 1.0
    seed: int = 0
    oracle: str = "hidden"
    scorer: str = "direct"
    scorer_params: dict = field(default_factory=dict)
    embed: dict = field(default_factory=dict)  # EmbedConfig fields other than the seed
    preselect: dict = field(default_factory=lambda: {"near_rejected": True})  # Preselect fields but the fraction
    strategy_params: dict = field(default_factory=dict)  # e.g. {"distributed": True} (coreset --distributed)
    patch_lowest: float | None = None  # PUMA-patch the head to remove the lowest-valued P % of labels each round

    @classmethod
    def from_state(cls, c: dict) -> LoopConfig:
        """The configuration of a state file, including those written before the parts
        became objects (k/aggregate/top_m/dvrl_iterations/arch/epochs/device fields)."""
        c = dict(c)
        # fields a state written by an older ads lacks take that version's behaviour
        c.setdefault("scorer", "knn-shapley")
        c.setdefault("fraction", 0.1)
        if "scorer_params" not in c:
            params = {"top_m": c.pop("top_m", 10), "aggregate": c.pop("aggregate", "max")}
            k, iters = c.pop("k", 10), c.pop("dvrl_iterations", 2000)
            if c.get("scorer", "knn-shapley") == "dvrl":
                params["iterations"] = iters
            else:
                params["k"] = k
            c["scorer_params"] = params
        if "embed" not in c:
            c["embed"] = {n: c.pop(n) for n in ("arch", "epochs", "device") if n in c}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(c) - known)
        if unknown:
            raise StoreError(f"run configuration has unknown fields {unknown}.")
        missing = sorted(n for n in ("pool", "labeled", "rounds", "budget") if n not in c)
        if missing:
            raise StoreError(f"run configuration lacks {missing}.")
        for name, want in _CONFIG_TYPES.items():
            if name in c and not (isinstance(c[name], want) and not isinstance(c[name], bool)):
                raise StoreError(f"run configuration field {name!r} must be {_TYPE_WORDS[want]}. Got {c[name]!r}.")
        return cls(**c)


_CONFIG_TYPES = {"pool": str, "labeled": str, "val": (str, type(None)), "test": (str, type(None)), "rounds": int,
                 "budget": int, "strategy": str, "fraction": (int, float), "seed": int, "oracle": str, "scorer": str,
                 "scorer_params": dict, "embed": dict, "preselect": dict, "strategy_params": dict,
                 "patch_lowest": (int, float, type(None))}
_TYPE_WORDS = {str: "a string", (str, type(None)): "a string or null", int: "an integer", (int, float): "a number",
               dict: "an object", (int, float, type(None)): "a number or null"}
STAGES = ("select", "label", "done")


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
            state = json.loads(self.state_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"{str(self.state_path)!r} is not valid JSON ({e}).") from None
        need = ("config", "round", "stage", "batch", "pending", "added", "records")
        if not isinstance(state, dict) or any(k not in state for k in need):
            missing = [k for k in need if not isinstance(state, dict) or k not in state]
            raise StoreError(f"{str(self.state_path)!r} is not a run state: it lacks {missing}.")
        where = f"{str(self.state_path)!r}"
        if not isinstance(state["config"], dict):
            raise StoreError(f"{where} field 'config' must be an object. Got {state['config']!r}.")
        if state["stage"] not in STAGES:
            raise StoreError(f"{where} field 'stage' must be one of {list(STAGES)}. Got {state['stage']!r}.")
        if isinstance(state["round"], bool) or not isinstance(state["round"], int) or state["round"] < 0:
            raise StoreError(f"{where} field 'round' must be an integer >= 0. Got {state['round']!r}.")
        for key in ("added", "records"):
            if not isinstance(state[key], list):
                raise StoreError(f"{where} field {key!r} must be a list. Got {state[key]!r}.")
        bad = [a for a in state["added"] if not (isinstance(a, list) and len(a) == 3 and isinstance(a[0], str)
                                                 and all(isinstance(v, int) for v in a[1:]))]
        if bad:
            raise StoreError(f"{where} field 'added' must hold [id, label, round] entries. Got {bad[0]!r}.")
        if state["stage"] == "label" and not (isinstance(state["batch"], list) and all(isinstance(b, str) for b in state["batch"])
                                              and isinstance(state["pending"], dict)):
            raise StoreError(f"{where} is at stage 'label' but has no batch of ids and pending record.")
        state["config"] = asdict(LoopConfig.from_state(state["config"]))
        return state

    def lock(self, timeout: float | None = DEFAULT_TIMEOUT, *, create: bool = False, command: str = "") -> RunLock:
        """The run directory's lock (``RUN/.lock``): hold it while changing the run."""
        return RunLock(self.dir, timeout=timeout, create=create, command=command)

    def save(self, state: dict) -> None:
        atomic_write_text(self.state_path, json.dumps(state, indent=1))

    def write_rounds(self, state: dict) -> None:
        atomic_write_text(self.dir / ROUNDS, "".join(json.dumps(r) + "\n" for r in state["records"]))


def _abs(p) -> str | None:
    return None if p is None else str(Path(p).resolve())


def start(config: LoopConfig, workdir, *, lock_timeout: float | None = DEFAULT_TIMEOUT) -> Run:
    """Validate the configuration and stores, and create the run directory's state.

    Store paths are saved absolute, so ``--resume`` works from any directory. Holds the
    run's lock (:class:`ads._lock.RunLock`); a failed start leaves no run directory.
    """
    with Run(workdir).lock(lock_timeout, create=True):
        return _start(config, workdir)


def _start(config: LoopConfig, workdir) -> Run:
    run = Run(workdir)
    if run.exists():
        raise ParameterError(f"{str(run.state_path)!r} exists: a run is in progress there; pass --resume to continue it.")
    config = LoopConfig(**{**asdict(config), "pool": _abs(config.pool), "labeled": _abs(config.labeled),
                           "val": _abs(config.val), "test": _abs(config.test)})
    check_int(config.rounds, "rounds", _OWNER, min_value=1)
    check_choice(config.oracle, ORACLES, "oracle", _OWNER)
    check_fraction(config.fraction, "fraction", _OWNER)
    check_seed(config.seed, "seed", _OWNER)
    check_patch_lowest(config.patch_lowest)
    EmbedConfig(**config.embed).validate()
    _preselect(asdict(config))
    from ads.score import SCORERS

    SCORERS.get_class(config.scorer)  # a known scorer; the caller builds it (and the strategy)
    task = _open_task(asdict(config))
    pool = task.pool
    check_budget(config.budget, pool.n, _OWNER, f"the pool {config.pool!r}")
    if config.rounds * config.budget > pool.n:
        raise ParameterError(
            f"rounds x budget ({config.rounds} x {config.budget}) is larger than the pool {config.pool!r} ({pool.n} points)."
        )
    if config.oracle == "hidden" and pool.hidden("y") is None:
        raise StoreError(f"pool {config.pool!r} has no hidden labels (hidden/y); use --oracle external.")
    run.dir.mkdir(parents=True, exist_ok=True)
    state = {"version": 2, "config": asdict(config), "round": 0, "stage": "select", "batch": None,
             "pending": None, "added": [], "records": []}
    run.save(state)
    logger.info("started run %s: %d rounds of %d, strategy %s, scorer %s, fraction %g", run.dir, config.rounds,
                config.budget, config.strategy, config.scorer, config.fraction)
    return run


def check_patch_lowest(p) -> None:
    """``patch_lowest`` is None (off) or a percentage in (0, 100)."""
    if p is not None:
        check_percent(p, "patch-lowest", _OWNER)


def _preselect(c: dict):
    from ads.select import Preselect

    # near_rejected absent: a state written before it existed, when it was off
    return Preselect(**{"near_rejected": False, **c.get("preselect", {}), "fraction": c["fraction"]}).validate(_OWNER)


def _open_task(c: dict):
    """The run's stores as a task (the initial labeled set, validation or hold-out)."""
    test = open_pool(c["test"], role="test store") if c.get("test") else None
    task = load_task(c["pool"], c["labeled"], c.get("val"), seed=c["seed"], extra=[(test, "test store")])
    task.test = test
    return task


def _labeled_data(task, added) -> tuple[LabeledData, np.ndarray]:
    """Initial labeled rows (less the hold-out, when there is no validation store) plus
    the pool points labeled so far; and the pool rows used."""
    pool = task.pool
    d = task.data
    x, y, ids = d.x, d.y, d.ids
    rows = np.empty(0, dtype=np.int64)
    if added:
        rows = pool.rows_of(a[0] for a in added)
        keep = np.array([a[1] >= 0 for a in added], dtype=bool)  # rejected items are never trained on
        xa = pool.take(rows)
        x = np.concatenate([x, xa[keep]])
        y = np.concatenate([y, np.array([a[1] for a in added], dtype=np.int64)[keep]])
        ids = np.concatenate([ids, np.array([a[0] for a in added])[keep]])
    return LabeledData(x, y, ids, d.x_val, d.y_val, d.val_source), rows


def _train_and_pick(state, task, *, strategy, scorer, progress, workdir=None, runner=None):
    """Train the network on the current labeled set; evaluate; pick the next batch (or,
    after the last round, only evaluate). Returns (record, batch ids)."""
    c = state["config"]
    rnd = state["round"]
    pool = task.pool
    data, rows = _labeled_data(task, state["added"])
    check_classes_covered(data.y, task.classes, f"labeled set of round {rnd}")
    seconds = {}
    t = time.perf_counter()
    cfg = EmbedConfig(**{**c["embed"], "seed": c["seed"] + rnd})
    # A pretrained backbone's features depend on the images only: cached across rounds.
    model = fit_embedder(task.kind, data, task.n_classes, cfg, progress=progress,
                         feature_cache=None if workdir is None else Path(workdir) / ".embeddings" / "backbone")
    emb, _ = model.transform(data.x)
    emb_val, proba_val = model.transform(data.x_val)
    test = None
    if task.test is not None:
        test_x, test_y, _ = labeled_arrays(task.test, "test store")
        test = (*model.transform(test_x), test_y)  # the network's embeddings and probabilities, the labels
    model, proba_val, proba_test, head_record = _round_head(model, rnd, c, data, task, emb, emb_val, proba_val, test, workdir)
    acc = None if test is None else float((proba_test.argmax(1) == test[2]).mean())
    record = {"round": rnd, "n_labeled": int(data.y.size), "n_bought": len(state["added"]),
              "n_rejected": sum(1 for a in state["added"] if a[1] < 0), "test_accuracy": acc,
              "val_accuracy": float(model.val_accuracy_), "seconds": seconds, "picked": [], **head_record}
    logger.info("round %d: %d labeled, test accuracy %s", rnd, data.y.size, acc if acc is None else round(acc, 4))
    if rnd >= c["rounds"]:
        seconds["train_embed"] = time.perf_counter() - t
        return record, []
    from ads.embed import Embeddings

    pe = embed_pool(model, pool, emb.shape[1], task.n_classes, path=None if workdir is None else Path(workdir) / ".embeddings" / "pool.zarr",
                    runner=runner, progress=progress, meta={"round": rnd})
    em = Embeddings(emb, emb_val, pe.emb, pe.proba, float(model.val_accuracy_), model.arch_, False, proba_val, pe)
    seconds["train_embed"] = time.perf_counter() - t
    exclude = np.zeros(pool.n, dtype=bool)
    exclude[rows] = True
    labeled_emb = np.concatenate([em.emb, em.emb_val]) if task.val is None else em.emb
    info = {}
    rejected = rows[np.array([a[1] < 0 for a in state["added"]], dtype=bool)] if rows.size else rows
    idx, _scores, n_cand = rank_and_pick(em, data, task.n_classes, budget=c["budget"], preselect=_preselect(c),
                                         scorer=scorer, strategy=strategy, seed=c["seed"] + rnd,
                                         labeled_emb=labeled_emb, exclude=exclude, rejected=rejected, seconds=seconds,
                                         info=info, runner=runner, progress=progress)
    ids = pool.ids_at(idx)
    record.update(picked=[str(i) for i in ids], n_candidates=n_cand, preselect=info)
    src = pool.hidden("source")
    if src is not None:
        tags, counts = np.unique(src[idx], return_counts=True)
        record["sources"] = {str(t): int(n) for t, n in zip(tags, counts)}
    return record, [str(i) for i in ids]


def _round_head(model, rnd, c, data, task, emb, emb_val, proba_val, test, workdir):
    """The round's model directory (``RUN/model``, for ``ads patch --model RUN``: a
    logistic-regression head over the network's embeddings of the labeled set) and, with
    ``patch_lowest``, the PUMA patch that removes the lowest-valued P % of the labels'
    influence from that head (metric accuracy, delta 0.01; valued by influence on the
    validation loss). ``test`` is (embeddings, probabilities, labels) of the test store
    from the network, or None. Returns the model to pick with (the network, or the network
    with the patched head), its validation and test probabilities, and the record's part."""
    from ads.patch import HeadModel, PatchedNetwork, head_proba, lowest_rows, patch_model, save_model

    p = c.get("patch_lowest")
    proba_test = None if test is None else test[1]
    if workdir is None and p is None:
        return model, proba_val, proba_test, {}
    head = HeadModel.fit(emb, data.y, data.ids, emb_val, data.y_val, task.classes,
                         meta={"arch": model.arch_, "round": rnd, "run": str(workdir), "validation": data.val_source})
    out = {}
    if p is not None:
        rows = lowest_rows(head, p, seed=c["seed"] + rnd)
        patched, report, details = patch_model(head, rows, metric="accuracy", delta=0.01)
        model = PatchedNetwork(model, patched.theta, report["val_accuracy_after"])
        proba_val = model.head_proba(emb_val)
        out = {**report, **details, "removed": [str(i) for i in head.ids[rows]]}
        if test is not None:
            test_emb, _, test_y = test
            proba_test = model.head_proba(test_emb)
            out.update(network_test_accuracy=float((test[1].argmax(1) == test_y).mean()),
                       head_test_accuracy_before=float((head_proba(head.theta, test_emb).argmax(1) == test_y).mean()))
        head = patched
        logger.info("round %d: patched the head to remove %d lowest-valued labels (accuracy change %+.4f)", rnd,
                    rows.size, report["measured_change"])
    if workdir is not None:
        save_model(Path(workdir) / "model", head)
    return model, proba_val, proba_test, {"patch": out} if out else {}


def resume(workdir, *, strategy, scorer, progress: bool = True, max_rounds=None,
           lock_timeout: float | None = DEFAULT_TIMEOUT, runner=None) -> dict:
    """Run (or continue) the loop until it is done or waits for external labels.

    ``strategy`` and ``scorer`` are the built parts named in the run's configuration
    (``config["strategy"]``, ``config["scorer"]`` with ``config["scorer_params"]``): the
    caller resolves the names, this module never does. Returns the final state.
    ``max_rounds`` stops after that many rounds (for tests). Holds the run's lock
    throughout; another writer waits up to ``lock_timeout`` seconds, then fails.
    """
    if not Run(workdir).dir.is_dir():
        Run(workdir).load()  # the usual message: no run there
    with Run(workdir).lock(lock_timeout):
        return _resume(workdir, strategy=strategy, scorer=scorer, progress=progress, max_rounds=max_rounds, runner=runner)


def _resume(workdir, *, strategy, scorer, progress: bool = True, max_rounds=None, runner=None) -> dict:
    run = Run(workdir)
    state = run.load()
    c = state["config"]
    task = _open_task(c)
    pool = task.pool
    done_rounds = 0
    while state["stage"] != "done":
        if state["stage"] == "select":
            record, batch = _train_and_pick(state, task, strategy=strategy, scorer=scorer, progress=progress,
                                            workdir=run.dir, runner=runner)
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
                logger.info("round %d: label the %d points in %s, then run 'ads label %s --import LABELS.csv'",
                            state["round"], len(state["batch"]), path, run.dir)
                return state
            hidden = pool.hidden("y")
            t = time.perf_counter()
            labels = [int(v) for v in hidden[pool.rows_of(state["batch"])]]
            _add_labels(run, state, labels, time.perf_counter() - t)
            done_rounds += 1
            if max_rounds is not None and done_rounds >= max_rounds:
                return state
    logger.info("run %s is done: %d points labeled in %d rounds", run.dir, len(state["added"]), c["rounds"])
    return state


def _add_labels(run: Run, state: dict, labels: list[int], seconds: float) -> None:
    record = state["pending"]
    record["seconds"]["label"] = seconds
    record["rejected"] = sum(1 for lab in labels if lab < 0)
    already = {a[0] for a in state["added"]}
    for pid, lab in zip(state["batch"], labels):
        if pid in already:  # cannot happen: batches exclude labeled points; guard the invariant
            raise StoreError(f"point {pid!r} would be labeled twice; {str(run.state_path)!r} is inconsistent.")
        state["added"].append([pid, int(lab), state["round"]])
    state["records"].append(record)
    state.update(round=state["round"] + 1, stage="select", batch=None, pending=None)
    run.save(state)  # the labels and the move to the next round land together
    run.write_rounds(state)


def _safe_name(pid: str) -> str:
    """A file name for an item id (characters outside [A-Za-z0-9._-] become '_')."""
    import re

    name = re.sub(r"[^A-Za-z0-9._-]", "_", pid)
    return name if name.strip(".") else "_" + name


def _write_to_label(run: Run, state: dict, pool: Pool) -> Path:
    """``RUN/round-K/to_label.csv`` (the batch's ids, in pick order) and, for image pools,
    each item as ``RUN/round-K/images/ID.png`` (column ``image``) for a person to label."""
    from ads._io import atomic_dir

    folder = run.dir / f"round-{state['round']}"
    path = folder / "to_label.csv"
    batch = list(state["batch"])
    if pool.kind != "images":
        atomic_write_text(path, "\n".join(["id"] + batch) + "\n")
        return path
    from PIL import Image

    imgs = pool.take(pool.rows_of(batch))
    names = [f"{_safe_name(b)}.png" for b in batch]
    with atomic_dir(folder / "images") as tmp:
        for img, name in zip(imgs, names):
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(tmp / name)
    atomic_write_text(path, "\n".join(["id,image"] + [f"{b},images/{n}" for b, n in zip(batch, names)]) + "\n")
    return path


REJECT = "reject"


def parse_label(lab: str, classes: list[str]) -> int | None:
    """A label as a class index: a class name, an index, or ``reject``/empty (-1, the
    item belongs to no class). None if it is none of these."""
    lab = lab.strip()
    if lab in classes:
        return classes.index(lab)
    if lab.lower() in (REJECT, ""):
        return -1
    if lab.isdigit() and int(lab) < len(classes):
        return int(lab)
    return None


def import_labels(workdir, labels_csv, *, lock_timeout: float | None = DEFAULT_TIMEOUT) -> dict:
    """Read ``id,label`` (label = class name or index) for the waiting batch and add them.

    Holds the run's lock, so two imports never both add labels for one batch: the second
    waits, then finds the batch labeled and fails (or times out naming the holder).
    """
    if not Run(workdir).dir.is_dir():
        Run(workdir).load()  # the usual message: no run there
    with Run(workdir).lock(lock_timeout):
        return _import_labels(workdir, labels_csv)


def _import_labels(workdir, labels_csv) -> dict:
    run = Run(workdir)
    state = run.load()
    if state["stage"] != "label":
        raise ParameterError(f"run {str(run.dir)!r} is not waiting for labels (stage {state['stage']!r}).")
    c = state["config"]
    task = _open_task(c)
    path = Path(labels_csv)
    if not path.exists():
        raise StoreError(f"labels file {str(path)!r} does not exist.")
    if not path.is_file():
        raise StoreError(f"labels file {str(path)!r} is not a regular file.")
    try:  # utf-8-sig: a byte-order mark (Excel's CSV) is read and dropped
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"id", "label"} <= set(reader.fieldnames):
                raise DataError(f"labels file {str(path)!r} must have a header with columns id,label. Got {reader.fieldnames}.")
            given = {}
            for n, row in enumerate(reader, start=2):
                pid, lab = row["id"], (row["label"] or "").strip()
                if pid in given:
                    raise DataError(f"labels file {str(path)!r} line {n}: id {pid!r} appears twice.")
                given[pid] = (n, lab)
    except UnicodeDecodeError as e:
        raise DataError(f"labels file {str(path)!r} is not UTF-8 text (byte {e.start}); save it as UTF-8 CSV.") from None
    batch = state["batch"]
    missing = [b for b in batch if b not in given]
    extra = [g for g in given if g not in set(batch)]
    if missing:
        raise DataError(f"labels file {str(path)!r} lacks {len(missing)} of the batch's ids, e.g. {missing[0]!r}.")
    if extra:
        raise DataError(f"labels file {str(path)!r} has ids not in the batch of round {state['round']}, e.g. {extra[0]!r}.")
    labels = []
    for b in batch:
        n, lab = given[b]
        idx = parse_label(lab, task.classes)
        if idx is None:
            raise DataError(f"labels file {str(path)!r} line {n}: label {lab!r} is not a class name, an index "
                            f"0..{task.n_classes - 1} or '{REJECT}'.")
        labels.append(idx)
    _add_labels(run, state, labels, 0.0)
    logger.info("imported %d labels for round %d", len(labels), state["round"] - 1)
    return state


def add_labels(workdir, labels: dict, *, lock_timeout: float | None = DEFAULT_TIMEOUT) -> dict:
    """Add labels (pool id -> class index, -1 = rejected) for items that were offered in a
    batch and are not labeled yet: some or all of the waiting batch, and late labels of an
    earlier batch's items (a labeling tool's annotators label as they go).

    At stage "label" this closes the waiting round in one atomic write (the batch's
    unlabeled items go back to the pool); at stage "select" the labels join the round
    about to be picked. Holds the run's lock. Returns the new state.
    """
    if not Run(workdir).dir.is_dir():
        Run(workdir).load()  # the usual message: no run there
    with Run(workdir).lock(lock_timeout):
        run = Run(workdir)
        state = run.load()
        if state["stage"] == "done":
            raise ParameterError(f"run {str(run.dir)!r} is done; it takes no more labels.")
        offered = {p for r in state["records"] for p in r.get("picked", [])} | set(state["batch"] or [])
        already = {a[0] for a in state["added"]}
        for pid, lab in labels.items():
            if pid not in offered:
                raise DataError(f"id {pid!r} was not offered in any batch of run {str(run.dir)!r}.")
            if pid in already:
                raise DataError(f"id {pid!r} is labeled already in run {str(run.dir)!r}.")
            if isinstance(lab, bool) or not isinstance(lab, int) or lab < -1:
                raise DataError(f"label of id {pid!r} must be a class index or -1 (rejected). Got {lab!r}.")
        if state["stage"] == "label":
            batch = state["batch"]
            ids = [b for b in batch if b in labels] + [p for p in labels if p not in set(batch)]
            state["batch"] = ids  # _add_labels adds exactly these; the record keeps the whole pick
            _add_labels(run, state, [int(labels[p]) for p in ids], 0.0)
        else:
            state["added"].extend([p, int(lab), state["round"]] for p, lab in labels.items())
            run.save(state)
        return state


__all__ = ["LoopConfig", "Run", "start", "resume", "import_labels", "add_labels", "parse_label", "report", "read_rounds"]
