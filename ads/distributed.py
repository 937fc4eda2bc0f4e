"""The pool's chunk functions as Dask tasks (``--scheduler``, ``ADS_SCHEDULER``).

:class:`DaskRunner` has the interface of :class:`ads.stages.InProcess` and runs the very
same chunk functions (:func:`ads.stages.embed_block`, :func:`ads.stages.summarize_block`)
over the very same work blocks, so picks are identical:

- **embed**: one task per work block over ``dask.array.from_zarr`` of the pool's ``x``
  (rechunked from the store's chunks to work blocks: whole chunks, >= 16 MiB of items,
  so each task lasts well over 100 ms); the trained embedder is scattered once, to every
  worker (``broadcast=True``: one copy per worker, not per task), and each task sets
  ``torch.set_num_threads`` to its worker's thread count (nanny workers start with
  OMP/MKL/OpenBLAS threads = 1). Each task writes its rows into the pool-embeddings zarr
  group (one chunk per block, so tasks never share a chunk) and returns only a count.
- **summarize**: one task per block over ``dask.array.from_zarr`` of the embeddings and
  probabilities, with the fitted scorer scattered once to every worker; each task returns
  its block's pre-selection buffers (:class:`ads.stream.Summary`, at most the candidate
  count per buffer), merged on the client as they arrive (exact, in any order).

Training, valuing and fitting the scorer stay on the client: they use only the labeled and
validation sets. The client holds the labeled set, one block's buffers at a time and the
candidates. A lost worker's tasks are recomputed by Dask on the others (a block written
twice holds the same values).

With a ``tcp://`` scheduler the pool store and the embeddings directory (the cache,
``--cache-dir``) must be on a file system every worker sees at the same path.
"""

from __future__ import annotations

import logging
import os
import re
import sys

import numpy as np

from ads.errors import AdsError, ParameterError
from ads.stages import embed_block, summarize_block
from ads.stream import CandidatePlan, MemoryEmbeddings, Summary

logger = logging.getLogger(__name__)

ENV = "ADS_SCHEDULER"
_LOCAL = re.compile(r"^local(?::(\d+))?$")
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/]+(:\d+)?/?$")


class SchedulerError(AdsError):
    """The Dask scheduler cannot be reached or started."""


def parse(spec: str | None):
    """``None`` (in-process), ``("local", n_workers or None)`` or ``("address", addr)``."""
    if spec is None:
        spec = os.environ.get(ENV) or None
    if spec is None or spec.strip() in ("", "none", "in-process"):
        return None
    spec = spec.strip()
    m = _LOCAL.match(spec)
    if m:
        n = int(m.group(1)) if m.group(1) else None
        if n is not None and n < 1:
            raise ParameterError(f"The 'scheduler' parameter must be local, local:N (N >= 1) or tcp://HOST:PORT. Got {spec!r}.")
        return ("local", n)
    if _ADDRESS.match(spec):
        return ("address", spec.rstrip("/"))
    raise ParameterError(f"The 'scheduler' parameter must be local, local:N or tcp://HOST:PORT. Got {spec!r}.")


def connect(spec: str | None = None, *, timeout: float = 10.0, threads_per_worker: int = 1):
    """A :class:`DaskRunner` for ``spec`` (``local``, ``local:N``, ``tcp://HOST:PORT``;
    None: the ``ADS_SCHEDULER`` environment variable), or None for the in-process default.

    ``local`` starts a :class:`distributed.LocalCluster` of worker processes (one per core,
    ``threads_per_worker`` threads each), closed with the runner. A script that calls this
    needs an ``if __name__ == "__main__":`` guard: workers spawn.
    """
    parsed = parse(spec)
    if parsed is None:
        return None
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        from ads.errors import MissingDependencyError

        raise MissingDependencyError("--scheduler needs Dask: pip install 'ads[dask]'.") from None
    kind, arg = parsed
    if kind == "local":
        n = arg or max(1, (os.cpu_count() or 1) // threads_per_worker)
        try:
            cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
        except Exception as e:  # noqa: BLE001 - any start failure is one line
            raise SchedulerError(f"cannot start a local Dask cluster of {n} workers ({type(e).__name__}: {e}).") from None
        return DaskRunner(client, cluster, f"local:{n}")
    try:
        client = Client(arg, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - OSError, TimeoutError, ValueError for bad hosts
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SchedulerError(f"cannot reach the Dask scheduler at {arg!r} within {timeout:g} s ({reason}).") from None
    return DaskRunner(client, None, arg)


# -- tasks (run on workers) ---------------------------------------------------------------

_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Once per worker process: let glibc reuse freed tensors again.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting any malloc
    threshold switches off glibc's dynamic mmap threshold, so every allocation above 128 KiB
    is a fresh mmap, zero-filled page by page, and network inference on a worker ran ~2.5x
    slower than in-process (6.5 s vs 2.5 s for 24,000 images here). Raising the mmap
    threshold to 16 MiB and the trim threshold to 32 MiB brings it back to the in-process
    speed while still returning free memory above 32 MiB to the system. No-op off glibc.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if os.environ.get("ADS_WORKER_MALLOC_TUNE", "1") == "0":
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 16 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 32 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _set_threads() -> int:
    """torch's intra-op threads = this worker's thread count (set deliberately: nanny
    workers start with OMP/MKL/OpenBLAS threads = 1); glibc's malloc tuned (:func:`_tune_malloc`)."""
    _tune_malloc()
    try:
        from distributed import get_worker

        w = get_worker()
        n = int(getattr(getattr(w, "state", w), "nthreads", 1))
    except (ImportError, ValueError):
        n = 1
    try:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    except ImportError:
        pass
    return n


def _embed_task(x_block, model, out, start: int) -> int:
    _set_threads()
    emb, proba = embed_block(model, x_block)
    out.write(start, emb, proba)
    return int(proba.shape[0])


def _summarize_task(emb_block, proba_block, scorer, plan, start: int, excluded, near) -> Summary:
    _set_threads()
    return summarize_block(scorer, plan, start, emb_block, proba_block, excluded, near)


# -- the runner ---------------------------------------------------------------------------

def _bar(total, desc, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="pt", file=sys.stderr, disable=not progress, leave=False)


def _block_arrays(arr, blocks):
    """The delayed blocks of a dask array rechunked to ``blocks`` along rows."""
    rows = tuple(e - s for s, e in blocks)
    arr = arr.rechunk({0: rows, **{i: -1 for i in range(1, arr.ndim)}})
    return arr.to_delayed().reshape(-1)


class DaskRunner:
    """Runs the chunk functions as Dask tasks (see the module docstring)."""

    name = "dask"

    def __init__(self, client, cluster=None, spec: str = ""):
        self.client = client
        self.cluster = cluster
        self.spec = spec

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def _run(self, tasks, sizes, desc, progress, merge=None):
        from distributed import as_completed

        futures = self.client.compute(tasks)
        size_of = {f.key: n for f, n in zip(futures, sizes)}
        with _bar(sum(sizes), desc, progress) as bar:
            for fut in as_completed(futures):
                res = fut.result()
                if merge is not None:
                    merge(res)
                bar.update(size_of[fut.key])
                fut.release()

    def embed(self, model, pool, out, *, progress: bool = True, desc: str = "embed pool") -> None:
        import dask
        import dask.array as da

        if isinstance(out, MemoryEmbeddings):
            raise ParameterError("the Dask runner writes pool embeddings to a directory (give a cache directory).")
        x = da.from_zarr(str(pool.path), component="x")
        blocks = out.blocks
        model_f = self.client.scatter(model, broadcast=True, hash=False)
        tasks = [dask.delayed(_embed_task, pure=False)(b, model_f, out, s)
                 for b, (s, _e) in zip(_block_arrays(x, blocks), blocks)]
        self._run(tasks, [e - s for s, e in blocks], desc, progress)
        del model_f

    def summarize(self, scorer, source, plan: CandidatePlan, excluded, near=None, *, progress: bool = True) -> Summary:
        import dask
        import dask.array as da

        if isinstance(source, MemoryEmbeddings):  # arrays in the client's memory: nothing to distribute
            from ads.stages import InProcess

            return InProcess().summarize(scorer, source, plan, excluded, near, progress=progress)
        blocks = source.blocks
        src = source.attrs.get("emb_from")
        emb = da.from_zarr(src, component="x") if src else da.from_zarr(str(source.path), component="emb")
        proba = da.from_zarr(str(source.path), component="proba")
        scorer_f = self.client.scatter(scorer, broadcast=True, hash=False)
        near_f = self.client.scatter(near, broadcast=True, hash=False) if near is not None else None
        excluded = np.asarray(excluded, dtype=np.int64)
        tasks = []
        for eb, pb, (s, e) in zip(_block_arrays(emb, blocks), _block_arrays(proba, blocks), blocks):
            lo, hi = np.searchsorted(excluded, [s, e])
            tasks.append(dask.delayed(_summarize_task, pure=False)(eb, pb, scorer_f, plan, s, excluded[lo:hi], near_f))
        total = plan.new()
        self._run(tasks, [e - s for s, e in blocks], "score pool", progress, merge=total.merge)
        return total

    def map(self, fn, *iterables) -> list:
        """``list(map(fn, *iterables))`` as Dask tasks (a strategy's independent parts,
        e.g. the partitions of ``coreset --distributed``); an argument that is the same
        array in every call is scattered once to every worker."""
        cols = []
        for it in iterables:
            it = list(it)
            if it and all(a is it[0] for a in it) and isinstance(it[0], np.ndarray):
                f = self.client.scatter(it[0], broadcast=True, hash=False)
                it = [f] * len(it)
            cols.append(it)
        futures = self.client.map(fn, *cols, pure=False)
        return self.client.gather(futures)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["ENV", "SchedulerError", "parse", "connect", "DaskRunner"]
