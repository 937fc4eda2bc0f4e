"""KNN-Shapley against a brute-force oracle by subset enumeration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ads import shapley
from ads.errors import DataError, ParameterError
from ads.shapley import _block_values, _block_values_torch, _recursion_coefficients, _unique_rows, knn_shapley
from reference import brute_force_shapley, recursion_shapley


def _int_data(rng, n, n_val, d=3, classes=3, hi=4):
    x = rng.integers(0, hi, size=(n, d)).astype(np.float64)
    y = rng.integers(0, classes, size=n)
    xv = rng.integers(0, hi, size=(n_val, d)).astype(np.float64)
    yv = rng.integers(0, classes, size=n_val)
    return x, y, xv, yv


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_matches_brute_force_with_ties(seed, k):
    # hi=3 on 2 dims: many exact distance ties and duplicate points.
    rng = np.random.default_rng(seed)
    x, y, xv, yv = _int_data(rng, n=8, n_val=3, d=2, hi=3)
    got = knn_shapley(x, y, xv, yv, k=k)
    want = brute_force_shapley(x, y, xv, yv, k)
    np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("k,n", [(5, 3), (10, 4), (7, 7), (12, 9)])
def test_k_larger_than_n(k, n):
    rng = np.random.default_rng(k * 100 + n)
    x, y, xv, yv = _int_data(rng, n=n, n_val=4)
    got = knn_shapley(x, y, xv, yv, k=k)
    np.testing.assert_allclose(got, brute_force_shapley(x, y, xv, yv, k), atol=1e-12, rtol=0)
    # For K >= N the utility is additive: each point is worth 1[label matches] / K.
    want = np.mean([(y == v) / k for v in yv], axis=0)
    np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)


def test_duplicates_tie_exactly_at_k1():
    # Duplicated float32-ish points in high dimension: a plain float32 GEMM can break
    # these ties; the values must still match the oracle exactly.
    rng = np.random.default_rng(7)
    base = rng.normal(size=(5, 64)).astype(np.float32).astype(np.float64)
    x = np.concatenate([base, base[[0, 2, 3]]])  # rows 5,6,7 duplicate 0,2,3
    y = np.array([0, 1, 2, 0, 1, 1, 2, 0])
    xv = rng.normal(size=(3, 64)).astype(np.float32).astype(np.float64)
    yv = np.array([0, 1, 2])
    got = knn_shapley(x, y, xv, yv, k=1)
    # Oracle distances: sum of squares per row, identical for identical rows.
    np.testing.assert_allclose(got, brute_force_shapley(x, y, xv, yv, 1), atol=1e-12, rtol=0)


def test_one_class_and_single_point():
    x = np.array([[0.0], [1.0], [3.0]])
    y = np.zeros(3, dtype=int)
    got = knn_shapley(x, y, np.array([[0.5]]), np.array([0]), k=2)
    np.testing.assert_allclose(got, brute_force_shapley(x, y, np.array([[0.5]]), np.array([0]), 2), atol=1e-12)
    one = knn_shapley(np.array([[1.0, 2.0]]), [3], np.array([[0.0, 0.0]]), [3], k=4)
    np.testing.assert_allclose(one, [0.25])  # K > N = 1: value 1/K


@pytest.mark.parametrize("k", [1, 5, 40])
def test_efficiency_axiom(k):
    # Values sum to the full-set utility, averaged over validation points.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 4))
    y = rng.integers(0, 3, 30)
    xv = rng.normal(size=(11, 4))
    yv = rng.integers(0, 3, 11)
    vals = knn_shapley(x, y, xv, yv, k=k)
    full = []
    for v, c in zip(xv, yv):
        nn = np.argsort(((x - v) ** 2).sum(1), kind="stable")[:k]
        full.append((y[nn] == c).sum() / k)
    assert vals.sum() == pytest.approx(np.mean(full), abs=1e-12)


def test_blocking_and_threads_do_not_change_values():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(500, 16))
    y = rng.integers(0, 5, 500)
    xv = rng.normal(size=(57, 16))
    yv = rng.integers(0, 5, 57)
    ref = knn_shapley(x, y, xv, yv, k=7, n_jobs=1)
    small = knn_shapley(x, y, xv, yv, k=7, block_bytes=5 * 8 * 500 * 4, n_jobs=2)  # blocks of 4
    np.testing.assert_allclose(small, ref, atol=1e-14, rtol=0)


def test_torch_kernel_equals_numpy_kernel():
    pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 8))
    x[150:] = x[:150]  # duplicates
    y = rng.integers(0, 4, 300)
    xv = rng.normal(size=(20, 8))
    yv = rng.integers(0, 4, 20)
    uniq, inv = _unique_rows(x)
    sq = np.einsum("ij,ij->i", uniq, uniq)
    coef = _recursion_coefficients(300, 5)
    a = _block_values(uniq, sq, inv, y, xv, yv, coef, 5)
    b = _block_values_torch(uniq, sq, inv, y, xv, yv, coef, 5, dev="cpu")
    np.testing.assert_array_equal(a, b)


def test_cuda_values_equal_cpu_values():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine: the torch kernel is checked on CPU above")
    rng = np.random.default_rng(5)  # pragma: no cover - CI has no GPU
    x = rng.integers(0, 3, size=(300, 3)).astype(float)  # ties, duplicates, collisions
    y = rng.integers(0, 4, 300)
    xv = rng.integers(0, 3, size=(20, 3)).astype(float)
    yv = rng.integers(0, 4, 20)
    c = knn_shapley(x, y, xv, yv, k=5, device="cuda")
    np.testing.assert_allclose(c, knn_shapley(x, y, xv, yv, k=5), atol=1e-14, rtol=0)


def test_near_ties_resolved_exactly():
    # Distances differing only in the low bits (below the packed-key precision) must
    # still be ordered by distance, not by index.
    x = np.array([[np.nextafter(1.0, 2.0)], [1.0], [5.0]])  # row 0 one ulp farther than row 1
    y = np.array([0, 1, 1])
    got = knn_shapley(x, y, np.array([[0.0]]), np.array([1]), k=1)
    want = brute_force_shapley(x, y, np.array([[0.0]]), np.array([1]), 1)
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((np.zeros((3, 2)), [0, 1, 0], np.zeros((1, 2)), [0]), {"k": 0}, ParameterError, r"'k' parameter of knn_shapley must be an int >= 1\. Got 0\."),
        ((np.zeros((3, 2)), [0, 1, 0], np.zeros((1, 2)), [0]), {"k": 2.5}, ParameterError, r"'k' parameter .* Got 2\.5"),
        ((np.zeros((3, 2)), [0, 1], np.zeros((1, 2)), [0]), {}, DataError, r"y_train of knn_shapley has 2 labels; x_train has 3 rows"),
        ((np.zeros((3, 2)), [0, 1, 0], np.zeros((1, 3)), [0]), {}, DataError, r"x_val of knn_shapley has 3 columns; x_train has 2"),
        ((np.array([[0.0, np.nan]]), [0], np.zeros((1, 2)), [0]), {}, DataError, r"x_train of knn_shapley contains NaN"),
        ((np.zeros((0, 2)), [], np.zeros((1, 2)), [0]), {}, DataError, r"x_train of knn_shapley is empty"),
        ((np.zeros(3), [0, 1, 0], np.zeros((1, 2)), [0]), {}, DataError, r"must be 2-D"),
        ((np.zeros((3, 2)), [0.5, 1, 0], np.zeros((1, 2)), [0]), {}, DataError, r"integer class labels"),
    ],
)
def test_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        knn_shapley(*args, **kwargs)


def _check_unique_rows(x, uniq, inv):
    if inv is None:  # all rows distinct: the identity, no re-indexing
        assert uniq is x
        return
    np.testing.assert_array_equal(uniq[inv], x + 0.0)
    # first-occurrence order: the first row of each group, in increasing row order
    first = np.array([np.flatnonzero(inv == g)[0] for g in range(uniq.shape[0])])
    assert np.all(np.diff(first) > 0)


def _constant_hash(x):
    return np.zeros(x.shape[0], dtype=np.uint64)


def test_unique_rows_hash_and_collision_fallback(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 6))
    x[[7, 30, 41]] = x[3]
    x[12, 0] = -0.0
    x[13] = x[12]
    x[13, 0] = 0.0  # -0.0 and 0.0 are the same point
    uniq, inv = _unique_rows(x)
    _check_unique_rows(x, uniq, inv)
    assert uniq.shape[0] == 50 - 4
    # Force every hash to collide: the exact fallback must still be right.
    monkeypatch.setattr(shapley, "_row_hashes", _constant_hash)
    uniq2, inv2 = _unique_rows(x)
    _check_unique_rows(x, uniq2, inv2)
    np.testing.assert_array_equal(uniq2, uniq)
    # Distinct rows that all collide: the identity, in the original order (issue 17).
    y = rng.normal(size=(20, 3))
    uniq3, inv3 = _unique_rows(y)
    assert inv3 is None and uniq3 is y


def test_issue_17_example():
    # Two distinct rows of this set share a hash; the values were [0.333, 0, -0.167, -0.167].
    x = np.array([[1, 1], [2, 1], [2, 2], [0, 0]], float)
    got = knn_shapley(x, np.array([0, 1, 2, 3]), np.array([[1, 1]], float), np.array([0]), k=1)
    np.testing.assert_allclose(got, [1, 0, 0, 0], atol=1e-15)


# Property tests over small integer data: distinct rows, duplicated rows, and hash
# collisions forced by a constant hash, against the subset-enumeration oracle (n <= 8)
# and the plain per-validation-point recursion (larger n). Every kernel that dedups or
# reorders rows runs: the numpy kernel and the torch kernel (on CPU here).


@st.composite
def small_cases(draw, n_max):
    d = draw(st.integers(1, 3))
    hi = draw(st.integers(2, 4))
    n = draw(st.integers(1, n_max))
    rows = st.lists(st.integers(0, hi - 1), min_size=d, max_size=d)
    kind = draw(st.sampled_from(["distinct", "duplicates", "any"]))
    if kind == "distinct":
        n = min(n, hi**d)
        x = draw(st.lists(rows, min_size=n, max_size=n, unique_by=tuple))
    elif kind == "duplicates":
        base = draw(st.lists(rows, min_size=1, max_size=max(1, n // 2)))
        picks = draw(st.lists(st.integers(0, len(base) - 1), min_size=n, max_size=n))
        x = [base[i] for i in picks]
    else:
        x = draw(st.lists(rows, min_size=n, max_size=n))
    n = len(x)
    classes = draw(st.integers(1, 3))
    y = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    n_val = draw(st.integers(1, 4))
    xv = draw(st.lists(rows, min_size=n_val, max_size=n_val))
    yv = draw(st.lists(st.integers(0, classes - 1), min_size=n_val, max_size=n_val))
    k = draw(st.integers(1, n + 2))  # K > N included
    hash_ = draw(st.sampled_from(["real", "constant"]))
    return (np.array(x, float), np.array(y), np.array(xv, float), np.array(yv), k, hash_)


def _values_with(kernel, case, monkeypatch):
    x, y, xv, yv, k, hash_ = case
    with monkeypatch.context() as m:
        if hash_ == "constant":
            m.setattr(shapley, "_row_hashes", _constant_hash)
        if kernel == "torch":
            pytest.importorskip("torch")
            m.setattr(shapley, "_TORCH_DEVICE", "cpu")
            m.setattr(shapley, "_check_cuda", lambda: None)
            return knn_shapley(x, y, xv, yv, k=k, device="cuda")
        return knn_shapley(x, y, xv, yv, k=k)


_PROP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("kernel", ["numpy", "torch"])
@_PROP
@given(case=small_cases(n_max=7))
def test_property_matches_subset_enumeration(kernel, case, monkeypatch):
    x, y, xv, yv, k, _ = case
    got = _values_with(kernel, case, monkeypatch)
    np.testing.assert_allclose(got, brute_force_shapley(x, y, xv, yv, k), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kernel", ["numpy", "torch"])
@_PROP
@given(case=small_cases(n_max=40))
def test_property_matches_plain_recursion(kernel, case, monkeypatch):
    x, y, xv, yv, k, _ = case
    got = _values_with(kernel, case, monkeypatch)
    np.testing.assert_allclose(got, recursion_shapley(x, y, xv, yv, k), atol=1e-12, rtol=0)


def test_cuda_without_gpu_is_one_clear_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():  # pragma: no cover - CI has no GPU
        pytest.skip("a GPU is present")
    with pytest.raises(ParameterError, match=r"device='cuda' of knn_shapley needs a CUDA GPU"):
        knn_shapley(np.zeros((2, 2)), [0, 1], np.zeros((1, 2)), [0], device="cuda")
