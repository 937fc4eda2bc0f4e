"""A labeling session over a run directory: the calls a labeling tool's backend makes.

``ads serve`` is built on this, and other tools' backends (CVAT, Argilla, FiftyOne
scripts) use it directly::

    from ads.score import make_scorer
    from ads.session import Session
    import strategies

    s = Session.open("runs/team", pool="p.zarr", labeled="l.zarr", val="v.zarr")
    picked = s.select(100, strategy=strategies.get("coreset"), progress=print)
    s.add_labels({"pool-17": "3", "pool-4": "reject"})
    print(s.state())

The run directory is the loop's (``ads loop --oracle external``): ``state.json`` holds
the committed labels (``added``), ``round-K/`` the batches. Labels arrive one by one from
annotators, so a session first acknowledges them in an append-only ledger,
``RUN/labels.jsonl`` (one JSON line per call, flushed and fsync'ed before the call
returns; a torn last line from a kill was never acknowledged and is ignored). The next
:meth:`Session.select` commits every acknowledged label into ``state.json`` in one atomic
write (:func:`ads.loop.add_labels`), under the run's lock, before it picks. A label is thus
never lost (the ledger survives a kill) and never counted twice (the commit adds only ids
that ``state.json`` does not have).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from ads import loop as L
from ads._io import atomic_write_text
from ads._lock import DEFAULT_TIMEOUT
from ads.errors import AdsError, DataError, ParameterError

LEDGER = "labels.jsonl"
PICKED = "picked.json"
#: Stages a selection reports, in order.
STAGES = ("embed", "value", "score", "preselect", "strategy", "push")


class Cancelled(AdsError):
    """A selection was cancelled (its progress callback raised this)."""


class LabelConflict(DataError):
    """A label for an item that is committed already with another label."""


class _Progress:
    """Reports stages through ``callback(stage, done, total)``: the parts are wrapped so
    that their calls mark the stages (embedding is everything before the scorer's fit)."""

    def __init__(self, callback, n_pool: int):
        self.callback = callback
        self.n_pool = n_pool
        self.scores: list[np.ndarray] = []
        self.done = 0

    def __call__(self, stage, done=0, total=1):
        if self.callback is not None:
            self.callback(stage, int(done), int(total))


class _ScorerProxy:
    def __init__(self, scorer, progress: _Progress):
        self._scorer, self._p = scorer, progress

    def fit(self, *a, **kw):
        self._p("value", 0, 1)
        out = self._scorer.fit(*a, **kw)
        self._p("score", 0, self._p.n_pool)
        return self if out is self._scorer else out

    def score(self, X, proba):
        s = np.asarray(self._scorer.score(X, proba), dtype=np.float64)
        self._p.scores.append(s)
        self._p.done += s.shape[0]
        self._p("score", self._p.done, self._p.n_pool)
        if self._p.done >= self._p.n_pool:
            self._p("preselect", 0, 1)
        return s

    def __getattr__(self, name):
        return getattr(self._scorer, name)


class _StrategyProxy:
    def __init__(self, strategy, progress: _Progress):
        self._strategy, self._p = strategy, progress

    def select(self, *a, **kw):
        self._p("strategy", 0, 1)
        out = self._strategy.select(*a, **kw)
        self._p("strategy", 1, 1)
        return out

    def __getattr__(self, name):
        return getattr(self._strategy, name)


class Session:
    """One run directory, opened by :meth:`open` (or ``Session(run_dir)`` for an existing run)."""

    def __init__(self, run_dir, *, lock_timeout: float | None = DEFAULT_TIMEOUT):
        self.run = L.Run(run_dir)
        self.lock_timeout = lock_timeout
        self.config = self.run.load()["config"]
        from ads.pool import open_pool

        self.classes = list(open_pool(self.config["labeled"], role="labeled store").classes)
        self._ledger_lock = threading.Lock()
        self._ledger_cache: tuple[int, dict] = (0, {})

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, run_dir, *, pool=None, labeled=None, val=None, test=None, budget: int = 100, strategy: str = "coreset",
             scorer: str = "direct", scorer_params: dict | None = None, fraction: float = 1.0, seed: int = 0,
             embed: dict | None = None, preselect: dict | None = None,
             lock_timeout: float | None = DEFAULT_TIMEOUT) -> Session:
        """Reopen the run in ``run_dir``, or create it from the stores (an ``ads loop
        --oracle external`` run) when it has no ``state.json`` yet."""
        run = L.Run(run_dir)
        if not run.exists():
            if pool is None or labeled is None:
                raise ParameterError(f"run directory {str(run.dir)!r} has no run yet: give the pool and labeled stores "
                                     "to create one.")
            from ads.pool import open_pool

            n = open_pool(pool, role="pool").n
            cfg = L.LoopConfig(pool=str(pool), labeled=str(labeled), val=None if val is None else str(val),
                               test=None if test is None else str(test), rounds=max(1, n // max(1, int(budget))),
                               budget=budget, strategy=strategy, fraction=fraction, seed=seed, oracle="external",
                               scorer=scorer, scorer_params=dict(scorer_params or {}), embed=dict(embed or {}),
                               preselect=dict(preselect or {"near_rejected": True}))
            L.start(cfg, run_dir, lock_timeout=lock_timeout)
        else:
            c = run.load()["config"]
            given = {"pool": pool, "labeled": labeled, "val": val, "test": test}
            for name, path in given.items():
                if path is not None and c[name] != str(Path(path).resolve()):
                    raise ParameterError(f"run {str(run.dir)!r} was created with {name} {c[name]!r}, not {str(path)!r}.")
            if c["oracle"] != "external":
                raise ParameterError(f"run {str(run.dir)!r} has oracle {c['oracle']!r}; a session needs an external one "
                                     "(a run made by 'ads loop --oracle external' or by a session).")
        return cls(run_dir, lock_timeout=lock_timeout)

    # ------------------------------------------------------------ labels
    @property
    def ledger_path(self) -> Path:
        return self.run.dir / LEDGER

    def pending(self) -> dict:
        """Acknowledged labels (id -> class index, -1 = rejected), committed or not."""
        with self._ledger_lock:
            return dict(self._read_ledger())

    def _read_ledger(self) -> dict:
        """The ledger's labels (the caller holds ``_ledger_lock``); reads only what was appended."""
        path = self.ledger_path
        offset, labels = self._ledger_cache
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return {}
        if size < offset:  # the ledger was replaced: read it again
            offset, labels = 0, {}
        if size > offset:
            labels = dict(labels)
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1  # a torn last line (a kill mid-write) was never acknowledged
            for line in data[:end].splitlines():
                try:
                    rec = json.loads(line)
                    labels.update({str(k): int(v) for k, v in rec["labels"].items()})
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
            offset += end
            self._ledger_cache = (offset, labels)
        return labels

    def parse(self, label) -> int:
        """A label as a class index: a class name, an index (int or digits) or ``reject``."""
        if isinstance(label, bool):
            idx = None
        elif isinstance(label, int):
            idx = label if 0 <= label < len(self.classes) else None
        elif isinstance(label, str):
            idx = L.parse_label(label, self.classes)
        else:
            idx = None
        if idx is None:
            raise DataError(f"label {label!r} is not a class name, an index 0..{len(self.classes) - 1} or '{L.REJECT}'.")
        return idx

    def add_labels(self, labels) -> dict:
        """Acknowledge labels: ``{id: label}`` or ``[{"id": ..., "label": ...}, ...]``, a label
        being a class name, an index or ``reject`` (as ``ads label --import``). Ids must have
        been offered in a batch. A label equal to the acknowledged one is a no-op; a changed
        label replaces it until the next selection commits it. Durable on return."""
        if isinstance(labels, dict):
            items = list(labels.items())
        else:
            items = []
            for n, e in enumerate(labels):
                if not isinstance(e, dict) or "id" not in e or "label" not in e:
                    raise DataError(f"labels[{n}] must be an object with 'id' and 'label'. Got {e!r}.")
                items.append((e["id"], e["label"]))
        state = self.run.load()
        offered = {p for r in state["records"] for p in r.get("picked", [])} | set(state["batch"] or [])
        committed = {a[0]: a[1] for a in state["added"]}
        parsed, seen = {}, set()
        for pid, lab in items:
            if not isinstance(pid, str) or not pid:
                raise DataError(f"id {pid!r} must be a non-empty string.")
            if pid in seen:
                raise DataError(f"id {pid!r} appears twice.")
            seen.add(pid)
            if pid not in offered:
                raise DataError(f"id {pid!r} was not offered in any batch of this run.")
            idx = self.parse(lab)
            if pid in committed and committed[pid] != idx:
                raise LabelConflict(f"id {pid!r} is labeled already ({self._name(committed[pid])}) and committed; "
                                    f"it cannot become {self._name(idx)}.")
            parsed[pid] = idx
        with self._ledger_lock:
            known = self._read_ledger()
            new = {p: i for p, i in parsed.items() if known.get(p) != i and p not in committed}
            if new:
                line = json.dumps({"t": round(time.time(), 3), "labels": new}) + "\n"
                fd = os.open(self.ledger_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # other processes appending to the same ledger
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":  # end a torn line left by a kill
                        line = "\n" + line
                    os.write(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return {"accepted": len(new), "unchanged": len(parsed) - len(new)}

    def _name(self, idx: int) -> str:
        return L.REJECT if idx < 0 else repr(self.classes[idx])

    # ------------------------------------------------------------ state
    def state(self) -> dict:
        """Round, stage, counts (committed + acknowledged), the current batch and how much
        of it is labeled."""
        state = self.run.load()
        committed = {a[0]: a[1] for a in state["added"]}
        pending = {p: i for p, i in self.pending().items() if p not in committed}
        every = {**committed, **pending}
        batch = list(state["batch"] or []) if state["stage"] == "label" else []
        return {"round": state["round"], "stage": state["stage"],
                "labeled": sum(1 for v in every.values() if v >= 0), "rejected": sum(1 for v in every.values() if v < 0),
                "committed": len(committed), "pending": len(pending), "batch": batch,
                "batch_labeled": sum(1 for b in batch if b in every)}

    def picked(self, round_: int | None = None) -> dict | None:
        """The stored result of a round's selection: ``{"round", "picked": [{"id", "score"}]}``."""
        state = self.run.load()
        if round_ is None:
            if state["stage"] != "label":
                return None
            round_ = state["round"]
        path = self.run.dir / f"round-{round_}" / PICKED
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    # ------------------------------------------------------------ selection
    def select(self, budget: int | None = None, *, strategy, scorer=None, strategy_name: str | None = None,
               fraction: float | None = None, seed: int | None = None, progress=None) -> dict:
        """Commit the acknowledged labels, then pick the next batch of ``budget`` items.

        ``strategy``: a strategy object (e.g. ``strategies.get("coreset")``); ``scorer``: a
        :class:`ads.score.Scorer` (default: the run's, from its configuration).
        ``progress(stage, done, total)`` is called as the stages advance (``embed``,
        ``value``, ``score``, ``preselect``, ``strategy``); raising :class:`Cancelled` in
        it stops the selection (the committed labels stay). Returns
        ``{"round", "picked": [{"id", "score"}, ...]}`` in pick order, stored as
        ``RUN/round-K/picked.json``.
        """
        from ads._validation import check_fraction, check_int, check_seed
        from ads.score import make_scorer

        owner = "Session.select"
        with self.run.lock(self.lock_timeout):
            state = self.run.load()
            if state["stage"] == "done":
                raise ParameterError(f"run {str(self.run.dir)!r} is done.")
            committed = {a[0] for a in state["added"]}
            todo = {p: i for p, i in self.pending().items() if p not in committed}
            if todo or state["stage"] == "label":
                state = L.add_labels(self.run.dir, todo)
            c = state["config"]
            from ads.pool import open_pool

            pool = open_pool(c["pool"], role="pool")
            left = pool.n - len(state["added"])
            if budget is not None:
                check_int(budget, "budget", owner, min_value=1)
                if budget > left:
                    raise ParameterError(f"The 'budget' parameter of {owner} ({budget}) is larger than the unlabeled pool "
                                         f"left ({left} points).")
                c["budget"] = int(budget)
            if fraction is not None:
                c["fraction"] = check_fraction(fraction, "fraction", owner)
            if seed is not None:
                c["seed"] = check_seed(seed, "seed", owner)
            if strategy_name is not None:
                c["strategy"] = strategy_name
            c["rounds"] = max(c["rounds"], state["round"] + 1)  # a session runs as many rounds as it is asked for
            self.run.save(state)
            if scorer is None:
                scorer = make_scorer(c["scorer"], **c["scorer_params"])
            p = _Progress(progress, pool.n)
            p("embed", 0, 1)
            state = L.resume(self.run.dir, strategy=_StrategyProxy(strategy, p), scorer=_ScorerProxy(scorer, p),
                             progress=False, lock_timeout=self.lock_timeout)
            scores = np.concatenate(p.scores) if p.scores else np.zeros(pool.n)
            rows = pool.rows_of(state["batch"])
            result = {"round": state["round"], "budget": c["budget"], "strategy": c["strategy"],
                      "picked": [{"id": b, "score": float(scores[r])} for b, r in zip(state["batch"], rows)]}
            atomic_write_text(self.run.dir / f"round-{state['round']}" / PICKED, json.dumps(result))
            return result


__all__ = ["Session", "Cancelled", "LabelConflict", "STAGES", "LEDGER"]
