"""Exact KNN-Shapley values (Jia et al. 2019, "Efficient task-specific data valuation for
nearest neighbor algorithms", Theorem 1).

For one validation point (x, y) and training points sorted by distance to x,
alpha_1 (nearest) ... alpha_N (farthest), with a_i = 1[y_{alpha_i} = y], the utility of
a subset S is the fraction of its min(K, |S|) nearest members (nearest *within S*) that
share the label y, divided by K. Theorem 1 gives its Shapley values by the recursion

    s_{alpha_N} = a_N / max(N, K)                                           (base case)
    s_{alpha_i} = s_{alpha_{i+1}} + (a_i - a_{i+1}) / K * min(K, i) / i     (i = N-1..1)

The paper's base case is a_N / N, which is only right for N >= K: for N < K the utility
is additive (every member of every subset is among its K nearest), so each point is
worth a_i / K, which the base case a_N / max(N, K) reproduces. The value of a training
point is the mean of its values over the validation points.

Ordering. Distances are squared Euclidean in float64; ties are broken by training index
ascending. Identical training rows are deduplicated before the distance product, so
duplicates get bit-identical distances and tie exactly (a GEMM can round identical rows
differently). The sort runs on uint64 keys that pack the distance's high bits with the
training index, which is several times faster than an argsort of floats; rows where the
packed keys tie but the full distances differ are re-sorted exactly.

Memory is bounded by the block of validation points processed at once:
about 5 * 8 bytes * block * N.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ads._validation import check_int, check_labels, check_matrix
from ads.errors import DataError, ParameterError

_OWNER = "knn_shapley"
_MAX_JOBS = 4
_MIN_BLOCKS = 32  # measured best of 4..64 at 20k x 1k on 2 cores
_MIN_ROWS = 16
_SERIAL_WORK = 10**6  # training x validation pairs; measured crossover on 2 cores (1000 x 400: 16 ms serial, 27 ms threaded)
_TORCH_DEVICE = "cuda"  # the torch kernel's device; tests run it on "cpu"


def knn_shapley(
    x_train,
    y_train,
    x_val,
    y_val,
    k: int = 10,
    *,
    block_bytes: int = 256 * 2**20,
    n_jobs: int | None = None,
    device: str = "cpu",
    progress=None,
) -> np.ndarray:
    """Exact KNN-Shapley value of every training point.

    Parameters
    ----------
    x_train : array of shape (n_train, d)
        Training embeddings (any float or int dtype; computed in float64).
    y_train : array of shape (n_train,)
        Integer training labels.
    x_val : array of shape (n_val, d)
        Validation embeddings.
    y_val : array of shape (n_val,)
        Integer validation labels.
    k : int, default 10
        Number of neighbours K of the KNN classifier whose utility is valued.
    block_bytes : int, default 256 MiB
        Bound on the working memory; validation points are processed in blocks sized so
        that the arrays of up to 4 blocks in flight (about 5 float64/uint64 arrays of
        block x n_train each) fit.
    n_jobs : int or None
        Threads over validation blocks (numpy releases the GIL in its kernels).
        None = number of CPUs, at most 4 (one below 10^6 training x validation pairs).
    device : {"cpu", "cuda"}
        "cuda" computes distances and sorts with torch on the GPU; the keys and the
        recursion are the same, so the values equal the CPU ones.
    progress : callable(int) or None
        Called with the number of validation points finished after each block.

    Returns
    -------
    values : ndarray of shape (n_train,), float64
        Mean over validation points of the Theorem 1 values. They sum to the mean
        full-set utility (efficiency axiom).
    """
    x_train, y_train, x_val, y_val = _check_inputs(x_train, y_train, x_val, y_val)
    k = check_int(k, "k", _OWNER, min_value=1)
    block_bytes = check_int(block_bytes, "block_bytes", _OWNER, min_value=1)
    if device not in ("cpu", "cuda"):
        raise ParameterError(
            f"The 'device' parameter of {_OWNER} must be 'cpu' or 'cuda'. Got {device!r}."
        )
    if device == "cuda":
        _check_cuda()
    n_train = x_train.shape[0]
    n_val = x_val.shape[0]

    # Deduplicate rows so that identical points get bit-identical distances.
    uniq, inverse = _unique_rows(x_train)
    coef = _recursion_coefficients(n_train, k)

    # Up to _MAX_JOBS blocks are in flight at once and share ``block_bytes``; at least
    # _MIN_BLOCKS blocks keep the threads busy to the end. The block size does not depend
    # on n_jobs or the machine, so neither does the summation order of the result.
    per_block = block_bytes // (_MAX_JOBS * 5 * 8 * max(n_train, 1))
    block = max(1, min(n_val, per_block, max(_MIN_ROWS, math.ceil(n_val / _MIN_BLOCKS))))
    starts = list(range(0, n_val, block))
    if n_jobs is None:  # below _SERIAL_WORK pairs, starting threads costs more than they save
        n_jobs = 1 if n_train * n_val < _SERIAL_WORK else min(_MAX_JOBS, os.cpu_count() or 1)
    n_jobs = max(1, min(n_jobs, len(starts)))
    if device == "cuda":
        n_jobs = 1

    kernel = _block_values_torch if device == "cuda" else _block_values
    y_small = _labels_small(np.concatenate([y_train, y_val]))
    y_train, y_val = y_small[:n_train], y_small[n_train:]
    uniq_sq = np.einsum("ij,ij->i", uniq, uniq)

    def run(s):
        xv = x_val[s : s + block]
        yv = y_val[s : s + block]
        return kernel(uniq, uniq_sq, inverse, y_train, xv, yv, coef, k)

    total = np.zeros(n_train, dtype=np.float64)
    if n_jobs == 1:
        for s in starts:
            total += run(s)
            if progress is not None:
                progress(min(block, n_val - s))
    else:
        # One BLAS thread per worker (the workers already fill the cores); results are
        # summed in block order, so the output does not depend on n_jobs.
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_jobs) as pool:
            for s, part in zip(starts, pool.map(run, starts)):
                total += part
                if progress is not None:
                    progress(min(block, n_val - s))
    return total / n_val


def _check_cuda():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        ok = False
    else:
        ok = torch.cuda.is_available()
    if not ok:
        raise ParameterError(f"device='cuda' of {_OWNER} needs a CUDA GPU; none is available. Use device='cpu'.")


def _check_inputs(x_train, y_train, x_val, y_val):
    x_train = _as_matrix(x_train, "x_train")
    x_val = _as_matrix(x_val, "x_val")
    y_train = _as_labels(y_train, "y_train")
    y_val = _as_labels(y_val, "y_val")
    if x_train.shape[0] == 0:
        raise DataError(f"x_train of {_OWNER} is empty: at least one training point is needed.")
    if x_val.shape[0] == 0:
        raise DataError(f"x_val of {_OWNER} is empty: at least one validation point is needed.")
    if y_train.shape[0] != x_train.shape[0]:
        raise DataError(
            f"y_train of {_OWNER} has {y_train.shape[0]} labels; x_train has {x_train.shape[0]} rows."
        )
    if y_val.shape[0] != x_val.shape[0]:
        raise DataError(
            f"y_val of {_OWNER} has {y_val.shape[0]} labels; x_val has {x_val.shape[0]} rows."
        )
    if x_train.shape[1] != x_val.shape[1]:
        raise DataError(
            f"x_val of {_OWNER} has {x_val.shape[1]} columns; x_train has {x_train.shape[1]}."
        )
    return x_train, y_train, x_val, y_val


def _as_matrix(a, name):
    return check_matrix(a, name, _OWNER)


def _as_labels(a, name):
    a = np.asarray(a)
    if a.ndim == 1 and a.dtype.kind == "i":  # any integers are class ids here (no -1 rule)
        return a.astype(np.int64, copy=False)
    return check_labels(a, name, _OWNER)


def _unique_rows(x):
    """Unique rows of x (C-contiguous float64) in order of first occurrence, and the map
    back to the rows of x.

    Returns ``(x, None)`` when every row is distinct (the map is the identity), else
    ``(uniq, inverse)`` with ``uniq[inverse]`` equal to x (-0.0 read as 0.0). Whatever
    path finds the unique rows, they are put in first-occurrence order, so the identity
    case is the same object and needs no re-indexing.

    Rows are hashed (:func:`_row_hashes`): distinct hashes prove distinct rows; rows
    sharing a hash are checked equal to the first of them, and a hash collision of
    different rows falls back to an exact row-wise ``np.unique`` (whose sorted order is
    then undone).
    """
    n = x.shape[0]
    if n == 1:
        return x, None
    h = _row_hashes(x)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.ravel().astype(np.int64)
    if first.shape[0] == n:
        return x, None
    bits = (x + 0.0).view(np.uint64)
    if not np.array_equal(bits[first[inverse]], bits):  # a collision of different rows
        view = np.ascontiguousarray(bits).view(np.dtype((np.void, 8 * x.shape[1]))).ravel()
        _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
        inverse = inverse.ravel().astype(np.int64)
        if first.shape[0] == n:
            return x, None
    # np.unique numbers groups in sorted (hash or byte) order: renumber them by first
    # occurrence so that the unique rows keep the original order.
    by_first = np.argsort(first, kind="stable")
    rank = np.empty_like(by_first)
    rank[by_first] = np.arange(by_first.shape[0])
    return x[first[by_first]], rank[inverse]


def _row_hashes(x):
    """(n,) uint64 hash of each row: a fixed random odd multiplier per column of the
    row's float64 bits, summed mod 2^64. Equal rows hash alike; different rows may too."""
    n = x.shape[0]
    weights = np.random.default_rng(0x5EED).integers(1, 2**63, size=x.shape[1], dtype=np.uint64) | np.uint64(1)
    h = np.empty(n, dtype=np.uint64)
    for s in range(0, n, 2048):  # chunks keep the temporaries in cache
        # +0.0 turns -0.0 into 0.0 so that equal values have equal bits.
        h[s : s + 2048] = ((x[s : s + 2048] + 0.0).view(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return h


def _recursion_coefficients(n, k):
    """coef[i-1] = min(K, i) / (K * i) for i = 1..N-1 (the Theorem 1 step factor)."""
    i = np.arange(1, n, dtype=np.float64)
    return np.minimum(float(k), i) / (k * i)


def _index_bits(n):
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


def _sorted_order(d, n):
    """Row-wise order of d (B x N float64 >= 0), ties by column index ascending.

    Sorts uint64 keys: the distance's bits with the low ``bits`` replaced by the index.
    Distances are >= 0, so their bit patterns order like the floats.
    """
    bits = _index_bits(n)
    keys = d.view(np.uint64) & ~np.uint64((1 << bits) - 1)
    keys |= np.arange(n, dtype=np.uint64)
    keys.sort(axis=1)
    return _order_from_sorted_keys(keys, d, n)


def _order_from_sorted_keys(keys, d, n):
    """Indices from sorted keys (consumed in place); rows where neighbouring keys share
    their distance bits but the full distances differ are redone with a stable argsort."""
    mask = np.uint64((1 << _index_bits(n)) - 1)
    tie = None
    if n > 1:
        # Same distance bits <=> the XOR of neighbouring keys has only index bits set.
        tie = np.bitwise_xor(keys[:, 1:], keys[:, :-1]) <= mask
    keys &= mask
    order = keys.view(np.int64)
    if tie is not None:
        rows, cols = np.nonzero(tie)
        if rows.size:
            da = d[rows, order[rows, cols]]
            db = d[rows, order[rows, cols + 1]]
            for r in np.unique(rows[da != db]):
                order[r] = np.argsort(d[r], kind="stable")
    return order


def _values_from_order(order, y_train, yv, coef, k):
    """Theorem 1 values of one block, summed over the block's rows: (N,) float64.

    With a_i = 1[y_(i) = y_val] in sorted order, s_i = s_N + sum_{j=i}^{N-1} diff_j where
    diff_j = (a_j - a_{j+1}) * min(K, j) / (K j) and s_N = a_N / max(N, K). Every row is a
    permutation, so each training point receives s_N of every row once.
    """
    b, n = order.shape
    a = (y_train[order] == yv[:, None]).view(np.int8)
    last = a[:, -1].astype(np.float64) / max(n, k)
    suffix = np.zeros((b, n), dtype=np.float64)  # the last column stays 0
    if n > 1:
        np.subtract(a[:, :-1], a[:, 1:], out=suffix[:, :-1], dtype=np.float64)
        suffix[:, :-1] *= coef
        rev = suffix[:, ::-1]
        np.cumsum(rev, axis=1, out=rev)  # suffix sums, in place
    return np.bincount(order.ravel(), weights=suffix.ravel(), minlength=n) + last.sum()


def _labels_small(y):
    """Labels as the smallest integer dtype that holds them (a cheaper gather)."""
    lo, hi = int(y.min()), int(y.max())
    for t in (np.int8, np.int16, np.int32):
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
            return y.astype(t)
    return y


def _block_values(uniq, uniq_sq, inverse, y_train, xv, yv, coef, k):
    """Summed Theorem 1 values of one validation block. ``inverse`` maps the training
    rows to ``uniq`` (None: ``uniq`` is the training set itself)."""
    n = y_train.shape[0]
    # ||u||^2 + ||x||^2 - 2 x.u, in place on the GEMM's output
    d_u = xv @ uniq.T
    d_u *= -2.0
    d_u += uniq_sq[None, :]
    d_u += np.einsum("ij,ij->i", xv, xv)[:, None]
    np.maximum(d_u, 0.0, out=d_u)
    d_u += 0.0  # -0.0 -> 0.0 so the bit pattern orders correctly
    d = d_u if inverse is None else d_u[:, inverse]
    order = _sorted_order(np.ascontiguousarray(d), n)
    return _values_from_order(order, y_train, yv, coef, k)


def _block_values_torch(uniq, uniq_sq, inverse, y_train, xv, yv, coef, k, dev=None):
    """:func:`_block_values` with the distances and the key sort in torch on ``dev``
    (default ``_TORCH_DEVICE``)."""
    import torch

    dev = torch.device(dev or _TORCH_DEVICE)
    n = y_train.shape[0]
    u = torch.as_tensor(uniq, device=dev)
    x = torch.as_tensor(xv, device=dev)
    d_u = torch.as_tensor(uniq_sq, device=dev)[None, :] + (x * x).sum(1)[:, None] - 2.0 * (x @ u.T)
    d_u = torch.clamp_min(d_u, 0.0) + 0.0
    d = d_u if inverse is None else d_u[:, torch.as_tensor(inverse, device=dev)]
    bits = _index_bits(n)
    # int64 keys: distances are >= 0, so the sign bit is clear and int64 order = float order.
    keys = d.view(torch.int64) & ~((1 << bits) - 1)
    keys |= torch.arange(n, device=dev, dtype=torch.int64)
    keys = torch.sort(keys, dim=1).values
    keys = keys.cpu().numpy().view(np.uint64).copy()
    order = _order_from_sorted_keys(keys, d.cpu().numpy(), n)
    return _values_from_order(order, y_train, yv, coef, k)


# --------------------------------------------------------------------------- direct values


class DirectValueTables:
    """Exact KNN-Shapley value that a new point (x, c) would receive if appended to the
    training set as its last point (index N, so ties with existing points put it after
    them), the validation set unchanged: what :func:`knn_shapley` returns for it on the
    N + 1 points, in closed form, without recomputing.

    For a validation point v, let alpha_1..alpha_N be the training points sorted by
    distance to v (ties by index), a_i = 1[y_{alpha_i} = y_v], and p = 1 + #{i : d_i <= d_x}
    the position x takes among the N + 1 points. With the Theorem 1 step factor
    f(j) = min(K, j) / (K j) and the base case b = 1 / max(N + 1, K), telescoping the
    recursion s_i = s_{i+1} + (a'_i - a'_{i+1}) f(i) from s_{N+1} = a'_{N+1} b gives

        s_p = 1[c = y_v] g(p) + T_v(p),
        g(p) = f(p) (p <= N),  g(N + 1) = b,
        T_v(p) = sum_{i=p}^{N-1} a_i (f(i+1) - f(i)) + a_N (b - f(N))  (p <= N),  T_v(N + 1) = 0.

    ``T_v`` (a suffix sum) and the sorted distances are computed once per validation point
    in ``__init__``; a new point then costs one distance per validation point and a binary
    search. Its value is the mean over validation points. Memory: two (n_val, N + 1)
    float64 tables.

    Parameters
    ----------
    x_train, y_train, x_val, y_val, k : as :func:`knn_shapley`.
    n_classes : int, optional
        Number of classes C of the per-class values (default: max label + 1).
    """

    def __init__(self, x_train, y_train, x_val, y_val, k: int = 10, n_classes: int | None = None):
        x_train, y_train, x_val, y_val = _check_inputs(x_train, y_train, x_val, y_val)
        self.k = check_int(k, "k", "DirectValueTables", min_value=1)
        n, k = x_train.shape[0], self.k
        top = int(max(y_train.max(), y_val.max())) + 1
        self.n_classes = top if n_classes is None else check_int(n_classes, "n_classes", "DirectValueTables", min_value=top)
        self.x_val = x_val
        self.val_sq = np.einsum("ij,ij->i", x_val, x_val)
        self.y_val = y_val
        # distances of every validation point to the training points, as knn_shapley
        # computes them (||u||^2 + ||v||^2 - 2 v.u in float64), sorted with ties by index
        uniq, inverse = _unique_rows(x_train)
        d = x_val @ uniq.T
        d *= -2.0
        d += np.einsum("ij,ij->i", uniq, uniq)[None, :]
        d += self.val_sq[:, None]
        np.maximum(d, 0.0, out=d)
        d += 0.0
        if inverse is not None:
            d = d[:, inverse]
        order = np.argsort(d, axis=1, kind="stable")
        self.sorted_d = np.take_along_axis(d, order, axis=1)
        a = (y_train[order] == y_val[:, None]).astype(np.float64)  # (V, N)
        j = np.arange(1, n + 1, dtype=np.float64)
        f = np.minimum(float(k), j) / (k * j)  # f(1..N)
        b = 1.0 / max(n + 1, k)
        self.g = np.append(f, b)  # g(p), p = 1..N+1, at index p-1
        step = np.append(np.diff(f), b - f[-1])  # f(i+1) - f(i) for i < N, b - f(N) for i = N
        T = np.zeros((x_val.shape[0], n + 1))
        T[:, :n] = np.cumsum((a * step[None, :])[:, ::-1], axis=1)[:, ::-1]
        self.T = T  # T_v(p) at index p-1
        self.onehot_val = np.zeros((x_val.shape[0], self.n_classes))
        self.onehot_val[np.arange(x_val.shape[0]), y_val] = 1.0

    def _contributions(self, X):
        """Per validation point: g(p) (V, n) and T_v(p) (V, n) of each new point."""
        import torch

        D = self.x_val @ X.T
        D *= -2.0
        D += np.einsum("ij,ij->i", X, X)[None, :]
        D += self.val_sq[:, None]
        np.maximum(D, 0.0, out=D)
        D += 0.0
        q = torch.searchsorted(torch.from_numpy(self.sorted_d), torch.from_numpy(D), right=True).numpy()
        return self.g[q], np.take_along_axis(self.T, q, axis=1)

    def class_values(self, X, *, block_rows: int = 8192) -> np.ndarray:
        """Exact value of each new point for each class: (n, C) float64."""
        X = check_matrix(X, "X", "DirectValueTables", dim=self.x_val.shape[1])
        out = np.empty((X.shape[0], self.n_classes))
        V = self.x_val.shape[0]
        for s in range(0, X.shape[0], block_rows):
            G, T = self._contributions(X[s : s + block_rows])
            out[s : s + block_rows] = (G.T @ self.onehot_val + T.sum(axis=0)[:, None]) / V
        return out

    def self_excluded_class_values(self) -> np.ndarray:
        """Each validation point's values as a new point, averaged over the *other*
        validation points (its own distance 0 would rank it first): (n_val, C). Used to
        calibrate thresholds on in-distribution points."""
        V = self.x_val.shape[0]
        if V < 2:
            raise DataError("calibrating on validation points needs at least 2 of them.")
        G, T = self._contributions(self.x_val)  # (V, V): row = validation point, column = new point
        np.fill_diagonal(G, 0.0)
        np.fill_diagonal(T, 0.0)
        return (G.T @ self.onehot_val + T.sum(axis=0)[:, None]) / (V - 1)


def direct_values(x_train, y_train, x_val, y_val, X, k: int = 10, n_classes: int | None = None) -> np.ndarray:
    """(n, C) exact KNN-Shapley values of each row of ``X`` as a new training point of each
    class; see :class:`DirectValueTables`."""
    return DirectValueTables(x_train, y_train, x_val, y_val, k=k, n_classes=n_classes).class_values(X)
