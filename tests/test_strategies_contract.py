"""The contract every strategy meets, run for every registered strategy.

:class:`StrategyContract` holds the checks; :class:`TestContract` runs them for each name
in :func:`strategies.available` (entry-point strategies included). A new strategy gets
them for free; its own file adds the oracle tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import strategies
from ads.errors import DataError, ParameterError

BUILTIN = {"badge", "coreset", "entropy", "kmedians", "margin", "random"}


def _softmax(Z):
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def digits_data():
    """200 digits (integer pixels, some near-duplicates), 30 labeled, softmax proba."""
    X = load_digits().data
    rng = np.random.default_rng(0)
    idx = rng.permutation(X.shape[0])
    X_cand, X_lab = X[idx[:200]], X[idx[200:230]]
    W = rng.normal(scale=0.05, size=(X.shape[1], 10))
    return X_cand, X_lab, _softmax(X_cand @ W)


class StrategyContract:
    """Checks for one strategy; subclasses provide the ``strategy_name`` fixture."""

    def select(self, name, X, n, **kw):
        return strategies.get(name).select(X, n, **kw)

    def kwargs(self, data, **over):
        X, X_lab, proba = data
        kw = dict(X_labeled=X_lab, proba=proba, random_state=0)
        kw.update(over)
        return kw

    @pytest.mark.parametrize("n", [1, 7, 200])
    def test_n_distinct_indices_in_range(self, strategy_name, digits_data, n):
        X = digits_data[0]
        picks = self.select(strategy_name, X, n, **self.kwargs(digits_data))
        assert picks.dtype == np.int64 and picks.shape == (n,)
        assert np.unique(picks).size == n
        assert picks.min() >= 0 and picks.max() < X.shape[0]

    def test_accepts_labeled_none_and_empty(self, strategy_name, digits_data):
        X = digits_data[0]
        for X_lab in (None, np.empty((0, X.shape[1]))):
            picks = self.select(strategy_name, X, 5, **self.kwargs(digits_data, X_labeled=X_lab))
            assert np.unique(picks).size == 5

    def test_same_seed_same_picks(self, strategy_name, digits_data):
        X = digits_data[0]
        a = self.select(strategy_name, X, 12, **self.kwargs(digits_data, random_state=3))
        b = self.select(strategy_name, X, 12, **self.kwargs(digits_data, random_state=3))
        c = self.select(
            strategy_name, X, 12, **self.kwargs(digits_data, random_state=np.random.default_rng(3))
        )
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)

    def test_inputs_not_modified(self, strategy_name, digits_data):
        X, X_lab, proba = (np.array(a, copy=True) for a in digits_data)
        X32 = X.astype(np.float32)
        copies = [X.copy(), X_lab.copy(), proba.copy(), X32.copy()]
        self.select(strategy_name, X, 9, X_labeled=X_lab, proba=proba, random_state=0)
        self.select(strategy_name, X32, 9, X_labeled=X_lab, proba=proba, random_state=0)
        for before, after in zip(copies, [X, X_lab, proba, X32]):
            np.testing.assert_array_equal(before, after)

    def test_float32_and_float64_agree(self, strategy_name, digits_data):
        # Digits are small integers, exact in float32: both dtypes see the same values,
        # and every strategy computes in float64, so the picks must be identical.
        X, X_lab, proba = digits_data
        kw = self.kwargs(digits_data)
        a = self.select(strategy_name, X.astype(np.float32), 10, **kw)
        b = self.select(strategy_name, X.astype(np.float64), 10, **kw)
        c = self.select(strategy_name, X.astype(np.int64), 10, **kw)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)

    @pytest.mark.parametrize(
        "n, match",
        [
            (201, r"The 'n' parameter of strategy '[\w-]+' must be <= the number of candidates \(200\)\. Got 201\."),
            (0, r"The 'n' parameter of strategy '[\w-]+' must be an int >= 1\. Got 0\."),
            (-3, r"The 'n' parameter of strategy '[\w-]+' must be an int >= 1\. Got -3\."),
            (2.0, r"The 'n' parameter of strategy '[\w-]+' must be an int >= 1\. Got 2\.0\."),
            ("3", r"The 'n' parameter of strategy '[\w-]+' must be an int >= 1\. Got '3'\."),
            (True, r"The 'n' parameter of strategy '[\w-]+' must be an int >= 1\. Got True\."),
        ],
    )
    def test_bad_n(self, strategy_name, digits_data, n, match):
        with pytest.raises(ParameterError, match=match):
            self.select(strategy_name, digits_data[0], n, **self.kwargs(digits_data))

    def test_numpy_int_n(self, strategy_name, digits_data):
        picks = self.select(strategy_name, digits_data[0], np.int32(4), **self.kwargs(digits_data))
        assert picks.shape == (4,)

    @pytest.mark.parametrize("bad", [np.nan, np.inf])
    @pytest.mark.parametrize("where", ["X", "X_labeled"])
    def test_non_finite_input(self, strategy_name, digits_data, bad, where):
        X, X_lab, proba = (np.array(a, dtype=np.float64) for a in digits_data)
        (X if where == "X" else X_lab)[3, 5] = bad
        with pytest.raises(DataError, match=rf"^{where} of strategy '{strategy_name}' contains NaN or inf\.$"):
            self.select(strategy_name, X, 4, X_labeled=X_lab, proba=proba)

    @pytest.mark.parametrize(
        "X, match",
        [
            (np.zeros(5), r"X of strategy '[\w-]+' must be 2-D\. Got shape \(5,\)\."),
            (np.zeros((0, 3)), r"X of strategy '[\w-]+' is empty\."),
            (np.array([["a", "b"]]), r"X of strategy '[\w-]+' must have a real numeric dtype\. Got <U1\."),
        ],
    )
    def test_bad_X(self, strategy_name, digits_data, X, match):
        with pytest.raises(DataError, match=match):
            self.select(strategy_name, X, 1, **self.kwargs(digits_data, proba=None))

    def test_labeled_column_mismatch(self, strategy_name, digits_data):
        X = digits_data[0]
        with pytest.raises(DataError, match=r"X_labeled of strategy '[\w-]+' has 3 columns; X has 64\."):
            self.select(strategy_name, X, 2, **self.kwargs(digits_data, X_labeled=np.zeros((4, 3))))

    @pytest.mark.parametrize("seed", [-1, 1.5, "0", True, 2**32])
    def test_bad_random_state(self, strategy_name, digits_data, seed):
        with pytest.raises(
            ParameterError,
            match=r"The 'random_state' parameter of strategy '[\w-]+' must be None, an int in \[0, 2\*\*32 - 1\], "
            r"a SeedSequence or a numpy Generator\. Got ",
        ):
            self.select(strategy_name, digits_data[0], 2, **self.kwargs(digits_data, random_state=seed))

    def test_proba_requirements(self, strategy_name, digits_data):
        X, X_lab, proba = digits_data
        if not strategies.get(strategy_name).needs_proba:
            # Strategies that do not use proba ignore it, even when it is unusable.
            self.select(strategy_name, X, 3, X_labeled=X_lab, proba=np.full((2, 2), np.nan))
            return
        with pytest.raises(ParameterError, match=rf"Strategy '{strategy_name}' needs class probabilities \('proba'\)\."):
            self.select(strategy_name, X, 3, proba=None)
        with pytest.raises(DataError, match=r"proba of strategy '[\w-]+' has 199 rows; X has 200\."):
            self.select(strategy_name, X, 3, proba=proba[1:])
        bad = proba.copy()
        bad[7, 0] = np.nan
        with pytest.raises(DataError, match=r"proba of strategy '[\w-]+' contains NaN or inf\."):
            self.select(strategy_name, X, 3, proba=bad)
        with pytest.raises(DataError, match=r"must hold probabilities in \[0, 1\]\. Got values in \[-1, "):
            self.select(strategy_name, X, 3, proba=proba - 1.0)
        with pytest.raises(DataError, match=r"Rows of proba of strategy '[\w-]+' must sum to 1 \(tolerance 0\.001\)\. Got 0\.5 in row 0\."):
            self.select(strategy_name, X, 3, proba=proba / 2)


@pytest.fixture(params=strategies.available())
def strategy_name(request):
    return request.param


class TestContract(StrategyContract):
    """The contract, once per registered strategy."""


def test_builtin_strategies_registered():
    assert BUILTIN <= set(strategies.available())


def test_get_unknown_name():
    with pytest.raises(ParameterError, match=r"Unknown strategy 'nope'\. Valid strategies: badge, coreset, "):
        strategies.get("nope")


def test_get_unknown_parameter():
    with pytest.raises(ParameterError, match=r"Bad parameters for strategy 'coreset': .*'bogus'"):
        strategies.get("coreset", bogus=1)


@pytest.mark.parametrize(
    "name, param, value, match",
    [
        ("coreset", "candidate_set_size", 0, r"The 'candidate_set_size' parameter of strategy 'coreset' must be an int >= 1\. Got 0\."),
        ("kmedians", "max_iter", 1.5, r"The 'max_iter' parameter of strategy 'kmedians' must be an int >= 1\. Got 1\.5\."),
    ],
)
def test_bad_strategy_parameter(digits_data, name, param, value, match):
    # sklearn convention: __init__ stores, select validates.
    s = strategies.get(name, **{param: value})
    with pytest.raises(ParameterError, match=match):
        s.select(digits_data[0], 3, random_state=0)


def test_register_requires_name():
    with pytest.raises(ValueError, match="has no name"):

        @strategies.register
        class Nameless(strategies.Strategy):
            pass
