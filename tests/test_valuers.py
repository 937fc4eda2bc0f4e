"""The valuers (issue 15) against brute-force oracles on small real data (scikit-learn's
breast cancer and optdigits), and through ``ads value``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from ads import influence as inf
from ads.errors import ParameterError
from ads.shapley import knn_shapley
from ads.valuers import VALUERS, make_valuer
from ads.valuers.utility import LogisticUtility
from tests.reference import brute_force_loo, enumerate_semivalue, knn_utility_mean

BUILT_IN = ["knn-shapley", "dvrl", "loo", "tmc-shapley", "beta-shapley", "data-oob", "influence", "representer"]


@pytest.fixture(scope="module")
def cancer():
    """Standardised breast cancer: 200 train with 20 % flipped labels, 150 validation."""
    d = load_breast_cancer()
    X = (d.data - d.data.mean(0)) / d.data.std(0)
    rng = np.random.default_rng(0)
    p = rng.permutation(len(d.target))
    tr, va = p[:200], p[200:350]
    y = d.target[tr].copy()
    flipped = np.zeros(200, dtype=bool)
    flipped[rng.permutation(200)[:40]] = True
    y[flipped] = 1 - y[flipped]
    return X[tr], y, X[va], d.target[va], flipped


@pytest.fixture(scope="module")
def digits_small():
    """Small-integer optdigits features (exact float64 distances), 3 classes."""
    d = load_digits(n_class=3)
    return d.data.astype(np.float64), d.target.astype(np.int64)


# ---------------------------------------------------------------- leave-one-out


@pytest.mark.parametrize("n,k", [(30, 3), (12, 1), (5, 10)])  # K > N: nobody takes the removed point's place
def test_loo_knn_equals_brute_force(digits_small, n, k):
    X, y = digits_small
    x_tr, y_tr, x_va, y_va = X[:n], y[:n], X[100:120], y[100:120]
    want = brute_force_loo(n, knn_utility_mean(x_tr, y_tr, x_va, y_va, k))
    got = make_valuer("loo", k=k, progress=False).fit(x_tr, y_tr, x_va, y_va, n_classes=3).values_
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_loo_logistic_refit_equals_retraining(cancer):
    X, y, Xv, yv, _ = cancer
    got = make_valuer("loo", utility="logistic", progress=False).fit(X, y, Xv, yv).values_
    head = inf.LogisticHead().fit(X, y, 2)
    full = inf.metric_at(head.theta_, Xv, yv, "loss")
    for i in (0, 7, 123, 199):
        keep = np.arange(len(y)) != i
        again = inf.LogisticHead().fit(X[keep], y[keep], 2)
        assert got[i] == pytest.approx(full - inf.metric_at(again.theta_, Xv, yv, "loss"), abs=1e-10)


# ---------------------------------------------------------------- Monte Carlo semivalues


@pytest.mark.parametrize("method,alpha,beta", [("tmc-shapley", 1.0, 1.0), ("beta-shapley", 4.0, 1.0),
                                               ("beta-shapley", 16.0, 1.0), ("beta-shapley", 1.0, 4.0)])
def test_monte_carlo_converges_to_enumerated_semivalues(digits_small, method, alpha, beta):
    """n = 8 points, KNN utility (K = 3) on 30 validation points. Stated tolerance: every
    estimate within 4 Monte Carlo standard errors (its own stderr_) of the exact value, and
    within 0.01 (values are at most 1/K = 0.33 apart)."""
    X, y = digits_small
    x_tr, y_tr, x_va, y_va = X[40:48], y[40:48], X[200:230], y[200:230]
    exact = enumerate_semivalue(8, knn_utility_mean(x_tr, y_tr, x_va, y_va, 3), alpha, beta)
    params = dict(k=3, truncation=0.0, max_permutations=3000, min_permutations=3000, random_state=1, progress=False)
    if method == "beta-shapley":
        params.update(alpha=alpha, beta=beta, weight_tol=0.0)
    v = make_valuer(method, **params).fit(x_tr, y_tr, x_va, y_va, n_classes=3)
    assert v.n_permutations_ == 3000
    err = np.abs(v.values_ - exact)
    assert (err <= 4 * v.stderr_ + 1e-12).all(), (err, v.stderr_)
    assert err.max() < 0.01


def test_beta_shapley_weight_cutoff_estimates_the_semivalue_without_large_subsets(digits_small):
    """weight_tol = 0.2 on n = 8 with Beta(16, 1): positions 3..8 weigh < 0.2 of position 1, so
    they are skipped; the estimate is then the semivalue over subsets of at most 1 point
    (enumerated), within 4 stderr, and dropped_weight_ is the left-out mass (0.08)."""
    from ads.valuers.montecarlo import position_weights

    X, y = digits_small
    x_tr, y_tr, x_va, y_va = X[40:48], y[40:48], X[200:230], y[200:230]
    util = knn_utility_mean(x_tr, y_tr, x_va, y_va, 3)
    cut = enumerate_semivalue(8, util, 16.0, 1.0, max_size=2)
    full = enumerate_semivalue(8, util, 16.0, 1.0)
    v = make_valuer("beta-shapley", k=3, weight_tol=0.2, max_permutations=40000, min_permutations=40000, random_state=1,
                    progress=False).fit(x_tr, y_tr, x_va, y_va, n_classes=3)
    assert v.positions_ == 2
    np.testing.assert_allclose(v.dropped_weight_, position_weights(8, 16.0, 1.0)[2:].sum() / 8)
    err = np.abs(v.values_ - cut)
    assert (err <= 4 * v.stderr_ + 1e-12).all(), (err, v.stderr_)
    assert (np.abs(full - cut) > 5 * v.stderr_).all()  # a different target, told apart at this precision


def test_tmc_max_positions_estimates_shapley_over_small_subsets(digits_small):
    """max_positions = 3 on n = 8: each permutation's first 3 positions are scanned, so the
    estimate is the Shapley semivalue over subsets of at most 2 points (enumerated with the
    later weights 0), within 4 stderr, told apart from the full Shapley value;
    dropped_weight_ is the left-out mass 5/8. A cap above n changes nothing."""
    X, y = digits_small
    x_tr, y_tr, x_va, y_va = X[40:48], y[40:48], X[200:230], y[200:230]
    util = knn_utility_mean(x_tr, y_tr, x_va, y_va, 3)
    cut = enumerate_semivalue(8, util, max_size=3)
    full = enumerate_semivalue(8, util)
    params = dict(k=3, truncation=0.0, max_permutations=20000, min_permutations=20000, random_state=1, progress=False)
    v = make_valuer("tmc-shapley", max_positions=3, **params).fit(x_tr, y_tr, x_va, y_va, n_classes=3)
    assert v.positions_ == 3
    assert v.dropped_weight_ == pytest.approx(5 / 8)
    err = np.abs(v.values_ - cut)
    assert (err <= 4 * v.stderr_ + 1e-12).all(), (err, v.stderr_)
    assert (np.abs(full - cut) > 5 * v.stderr_).any()
    params.update(max_permutations=50, min_permutations=50)
    big = make_valuer("tmc-shapley", max_positions=9, **params).fit(x_tr, y_tr, x_va, y_va, n_classes=3)
    none = make_valuer("tmc-shapley", **params).fit(x_tr, y_tr, x_va, y_va, n_classes=3)
    assert big.positions_ == 8
    np.testing.assert_array_equal(big.values_, none.values_)


def test_knn_shapley_valuer_threads_do_not_change_the_values(digits_small):
    """n_jobs reaches knn_shapley: one thread and two give the same values (blocks are summed
    in order), both equal to the kernel's; n_jobs = 0 is refused."""
    X, y = digits_small
    x_tr, y_tr, x_va, y_va = X[:150], y[:150], X[200:260], y[200:260]
    one = make_valuer("knn-shapley", k=5, n_jobs=1).fit(x_tr, y_tr, x_va, y_va).values_
    two = make_valuer("knn-shapley", k=5, n_jobs=2).fit(x_tr, y_tr, x_va, y_va).values_
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, knn_shapley(x_tr, y_tr, x_va, y_va, k=5))
    with pytest.raises(ParameterError, match="n_jobs"):
        make_valuer("knn-shapley", n_jobs=0).fit(x_tr, y_tr, x_va, y_va)


def test_monte_carlo_permutations_are_not_the_callers_own_stream(digits_small):
    """random_state = s must not make the first permutation default_rng(s).permutation(n), the
    shuffle a caller flipping labels with the same seed draws (SeedSequence([s, 0, 0]) is
    SeedSequence(s)): with K = 1, one permutation and one position, only the first point of
    the permutation gets a value. Over 20 seeds it is the caller's first point at chance rate
    (1/40) only, not every time."""
    X, y = digits_small
    x_tr, y_tr, x_va, y_va = X[:40], y[:40], X[200:260], y[200:260]
    same = 0
    for seed in range(20):
        v = make_valuer("tmc-shapley", k=1, truncation=0.0, max_positions=1, n_chains=1, max_permutations=1,
                        progress=False).fit(x_tr, y_tr, x_va, y_va, n_classes=3, random_state=seed)
        first = np.flatnonzero(v.values_)
        assert first.size == 1
        same += int(first[0] == np.random.default_rng(seed).permutation(40)[0])
    assert same <= 3, same


def test_data_oob_bootstrap_is_not_the_callers_own_stream():
    from ads.valuers.oob import bootstrap

    for seed in range(5):
        assert not np.array_equal(bootstrap(50, seed, 0)[0], np.random.default_rng(seed).integers(0, 50, 50))


def test_tmc_fit_tol_loosens_the_prefix_fits_only_slightly(cancer):
    """The default fit_tol (1e-3) against 1e-8 on the logistic utility: the same permutations
    (same seed), every prefix fit stopped earlier, so the values move, but by less than 1 %
    of their scale; and fit_tol must be a number > 0."""
    X, y, Xv, yv, _ = cancer
    params = dict(utility="logistic", n_chains=1, max_permutations=2, max_positions=60, random_state=3, progress=False)
    tight = make_valuer("tmc-shapley", fit_tol=1e-8, **params).fit(X, y, Xv, yv, n_classes=2).values_
    loose = make_valuer("tmc-shapley", **params).fit(X, y, Xv, yv, n_classes=2).values_
    assert np.count_nonzero(tight) > 50
    scale = np.abs(tight).max()
    assert 0 < np.abs(loose - tight).max() < 1e-2 * scale, np.abs(loose - tight).max() / scale
    for bad in (0, -1e-3, "1e-3"):
        with pytest.raises(ParameterError, match="fit_tol"):
            make_valuer("tmc-shapley", fit_tol=bad, **params).fit(X, y, Xv, yv, n_classes=2)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_tmc_max_positions_rejects_non_positive_ints(digits_small, bad):
    X, y = digits_small
    with pytest.raises(ParameterError, match="max_positions"):
        make_valuer("tmc-shapley", max_positions=bad, progress=False).fit(X[:8], y[:8], X[200:230], y[200:230])


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_logistic_utility_scan_equals_fits_from_scratch(cancer, metric):
    """The warm-started chord-Newton scan of the binary logistic utility gives the marginal
    contributions of independent from-scratch fits of every prefix (Utility.scan, generic)."""
    from ads.valuers.utility import Utility

    X, y, Xv, yv, _ = cancer
    util = LogisticUtility(metric=metric).bind(X, y, Xv, yv, 2)
    perms = np.stack([np.random.default_rng(s).permutation(len(y))[:80] for s in range(3)])
    np.testing.assert_allclose(util.scan(perms), Utility.scan(util, perms), rtol=0, atol=1e-7)


def test_logistic_utility_scan_of_whole_permutations_equals_fits_from_scratch(cancer):
    """All 200 prefixes (the kept inverse Hessian carried through ~200 Sherman-Morrison
    updates), with and without truncation."""
    from ads.valuers.utility import Utility

    X, y, Xv, yv, _ = cancer
    util = LogisticUtility(metric="loss").bind(X, y, Xv, yv, 2)
    perms = np.stack([np.random.default_rng(10 + s).permutation(len(y)) for s in range(2)])
    for truncation in (0.0, 0.01):
        np.testing.assert_allclose(util.scan(perms, truncation), Utility.scan(util, perms, truncation), rtol=0, atol=1e-7)


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_three_class_logistic_utility_scan_equals_fits_from_scratch(digits_small, metric):
    """Three classes: the Woodbury-updated chord scan against from-scratch fits, including
    the prefixes that still lack a class."""
    from ads.valuers.utility import Utility

    X, y = digits_small
    X = (X - X.mean(0)) / (X.std(0) + 1.0)
    util = LogisticUtility(metric=metric).bind(X[:150], y[:150], X[300:400], y[300:400], 3)
    perms = np.stack([np.random.default_rng(s).permutation(150)[:70] for s in range(3)])
    got = util.scan(perms)
    np.testing.assert_allclose(got, Utility.scan(util, perms), rtol=0, atol=1e-7)
    assert (got != 0).sum() > 20


@pytest.mark.parametrize("C", [2, 4])
def test_woodbury_point_term_gives_the_inverse_of_the_updated_hessian(C):
    """point_term's H^-1 + L D L^T against inverting the Hessian with the point added, and
    InverseHessian folding it (no BFGS pairs) gives the same matrix."""
    from ads.influence import _hessian, _proba
    from ads.valuers.utility import InverseHessian, point_term

    rng = np.random.default_rng(C)
    Xa = np.hstack([rng.normal(size=(30, 5)), np.ones((30, 1))])
    theta = rng.normal(size=(6, C - 1))
    pen = np.r_[np.ones(5), 0.0][:, None]
    H = _hessian(Xa[:-1], _proba(Xa[:-1], theta), np.ones(29), pen)
    want = np.linalg.inv(H + _hessian(Xa[-1:], _proba(Xa[-1:], theta), np.ones(1), 0 * pen))
    L, D = point_term(np.linalg.inv(H), Xa[-1], _proba(Xa[-1:], theta)[0, 1:])
    tol = 1e-10 * np.abs(want).max()
    np.testing.assert_allclose(np.linalg.inv(H) + L @ D @ L.T, want, rtol=0, atol=tol)
    g = rng.normal(size=len(want))
    approx = InverseHessian(np.linalg.inv(H), (L, D))
    np.testing.assert_allclose(approx.dot(g), want @ g, rtol=0, atol=tol * 10)
    np.testing.assert_allclose(approx.fold(), want, rtol=0, atol=tol)


def test_compact_inverse_hessian_equals_textbook_bfgs_updates_one_by_one():
    """InverseHessian (compact form) against the rank-two updates applied in turn, for
    products and the folded matrix; the secant equation holds for the last pair; a pair with
    y^T s <= 0 is skipped."""
    from ads.valuers.utility import InverseHessian

    rng = np.random.default_rng(0)
    p = 9
    A = rng.normal(size=(p, p))
    H0 = np.linalg.inv(A @ A.T + np.eye(p))
    G = A @ A.T + 2 * np.eye(p)  # curvature the pairs come from
    want, approx = H0.copy(), InverseHessian(H0.copy())
    for i in range(5):
        s = rng.normal(size=p)
        y = G @ s + 0.05 * rng.normal(size=p)
        if i == 2:
            y = -s  # skipped
        else:
            r, eye = 1.0 / (s @ y), np.eye(p)
            want = (eye - r * np.outer(s, y)) @ want @ (eye - r * np.outer(y, s)) + r * np.outer(s, s)
        g = rng.normal(size=p)
        approx.add(s, g, g + y)
        np.testing.assert_allclose(approx.dot(g), want @ g, rtol=0, atol=1e-10)
    assert len(approx.S) == 4
    np.testing.assert_allclose(approx.dot(y), s, rtol=0, atol=1e-10)
    np.testing.assert_allclose(approx.fold(), want, rtol=0, atol=1e-10)


def test_logistic_accuracy_of_a_subset_lacking_a_class_is_the_head_on_its_own_classes(digits_small):
    """Three classes, S with classes 1 and 2 only: V(S) = the accuracy of scikit-learn's binary
    LogisticRegression (C = 1/lam, the same model) fitted on S, predicting only 1 or 2; the
    log-likelihood variant is the uniform -log 3."""
    from sklearn.linear_model import LogisticRegression

    X, y = digits_small
    X = (X - X.mean(0)) / (X.std(0) + 1.0)
    Xv, yv = X[300:400], y[300:400]
    subset = np.flatnonzero(y[:150] != 0)[:40]
    util = LogisticUtility(metric="accuracy").bind(X[:150], y[:150], Xv, yv, 3)
    ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=10000).fit(X[subset], y[subset])
    assert util(subset) == pytest.approx(float(np.mean(ref.predict(Xv) == yv)), abs=1e-12)
    assert 0.2 < util(subset) < 0.7  # no class-0 validation point can be right
    loss = LogisticUtility(metric="loss").bind(X[:150], y[:150], Xv, yv, 3)
    assert loss(subset) == pytest.approx(-np.log(3))


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_tmc_logistic_utility_converges_to_enumerated_shapley(cancer, metric):
    """n = 6, validation accuracy / log-likelihood of the logistic head; same stated tolerance (4 stderr)."""
    X, y, Xv, yv, _ = cancer
    x_tr, y_tr = X[[0, 1, 2, 3, 5, 8]], y[[0, 1, 2, 3, 5, 8]]
    util = LogisticUtility(metric=metric).bind(x_tr, y_tr, Xv, yv, 2)
    exact = enumerate_semivalue(6, util)
    kw = {} if metric == "loss" else {"metric": metric}  # log-likelihood is the default
    v = make_valuer("tmc-shapley", utility="logistic", truncation=0.0, min_permutations=400, max_permutations=400,
                    random_state=0, progress=False, **kw).fit(x_tr, y_tr, Xv, yv)
    assert (np.abs(v.values_ - exact) <= 4 * v.stderr_ + 1e-9).all(), (v.values_, exact, v.stderr_)


def test_tmc_without_truncation_matches_exact_knn_shapley_and_stops_by_itself(cancer):
    X, y, Xv, yv, _ = cancer
    exact = knn_shapley(X, y, Xv, yv, k=10)
    for conv in ("relative", "gelman-rubin"):  # rtol 0.02 stops at 704 permutations, R-hat 1.01 at 960
        v = make_valuer("tmc-shapley", truncation=0.0, convergence=conv, rtol=0.02, rhat=1.01, max_permutations=5000,
                        random_state=0, progress=False).fit(X, y, Xv, yv)
        assert v.converged_ and v.n_permutations_ < 5000, conv
        assert np.corrcoef(v.values_, exact)[0, 1] > 0.99, conv


def test_monte_carlo_same_seed_same_values_whatever_n_jobs(cancer):
    X, y, Xv, yv, _ = cancer
    kw = dict(max_permutations=64, min_permutations=64, random_state=5, progress=False)
    a = make_valuer("beta-shapley", **kw).fit(X, y, Xv, yv).values_
    b = make_valuer("beta-shapley", n_jobs=2, **kw).fit(X, y, Xv, yv).values_
    c = make_valuer("beta-shapley", **{**kw, "random_state": 6}).fit(X, y, Xv, yv).values_
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ---------------------------------------------------------------- influence functions


def test_influence_equals_finite_difference_of_retraining(cancer):
    """Koh & Liang eq. 2. (a) The derivative: retraining with point i's weight 1 +- eps
    (eps = 1e-4, central difference) moves the validation log-likelihood by
    +- eps * value_i (removal is eps = -1): agreement to 1e-4 relative.
    (b) Removing the point (retraining without it, eps = -1): first order, so only close.
    Stated tolerance on these 200 points (20 % flipped, lam = 1): correlation with the
    exact change > 0.97, the same sign for >= 95 % of points, median relative error
    < 15 %, and every error < 40 % of the largest exact change (measured: 0.983, 99 %,
    9 %, 32 %: high-leverage flipped points move the head beyond the linear regime)."""
    X, y, Xv, yv, _ = cancer
    v = make_valuer("influence", progress=False).fit(X, y, Xv, yv).values_
    eps = 1e-4
    rows = [0, 3, 17, 42, 99, 150, 199]
    for i in rows:
        w = np.ones(len(y))
        w[i] = 1 + eps
        up = inf.metric_at(inf.LogisticHead().fit(X, y, 2, sample_weight=w).theta_, Xv, yv, "loss")
        w[i] = 1 - eps
        down = inf.metric_at(inf.LogisticHead().fit(X, y, 2, sample_weight=w).theta_, Xv, yv, "loss")
        assert (up - down) / (2 * eps) == pytest.approx(v[i], rel=1e-4, abs=1e-9)
    exact = make_valuer("loo", utility="logistic", progress=False).fit(X, y, Xv, yv).values_
    err = np.abs(v - exact)
    assert np.corrcoef(v, exact)[0, 1] > 0.97
    assert (np.sign(v) == np.sign(exact)).mean() >= 0.95
    assert np.median(err / np.abs(exact)) < 0.15
    assert err.max() < 0.4 * np.abs(exact).max()


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_psi_gradient_and_cg_solver(digits_small, metric):
    """psi's gradient against central differences; CG against the exact solve."""
    X, y = digits_small
    X = X / 16.0
    head = inf.LogisticHead(lam=1.0).fit(X[:150], y[:150], 3)
    value, g = inf.psi(head, X[200:260], y[200:260], metric)
    rng = np.random.default_rng(0)
    for _ in range(3):
        d = rng.normal(size=head.theta_.shape)
        h = 1e-6
        plus, minus = inf.LogisticHead(), inf.LogisticHead()
        for hh, m in ((h, plus), (-h, minus)):
            m.theta_, m.n_classes_, m.n_params_ = head.theta_ + hh * d, 3, head.n_params_
        fd = (inf.psi(plus, X[200:260], y[200:260], metric)[0] - inf.psi(minus, X[200:260], y[200:260], metric)[0]) / (2 * h)
        assert fd == pytest.approx(float(g @ d.ravel()), rel=1e-6, abs=1e-9)
    exact = inf.inverse_hvp(head, X[:150], g, method="exact")
    np.testing.assert_allclose(inf.inverse_hvp(head, X[:150], g, method="cg"), exact, rtol=1e-6, atol=1e-10)
    # phi: the parameter change of removing a point, to first order, for given rows
    ph = inf.phi(head, X[:150], y[:150], rows=[4, 9])
    np.testing.assert_allclose(ph @ g, inf.influence_on(head, X[:150], y[:150], exact)[[4, 9]], rtol=1e-8)


# ---------------------------------------------------------------- Data-OOB, representer


def test_data_oob_is_deterministic_for_a_seed(cancer):
    X, y, Xv, yv, _ = cancer
    a = make_valuer("data-oob", n_estimators=40, random_state=3, progress=False).fit(X, y, Xv, yv).values_
    b = make_valuer("data-oob", n_estimators=40, random_state=3, n_jobs=2, progress=False).fit(X, y, Xv, yv).values_
    c = make_valuer("data-oob", n_estimators=40, progress=False).fit(X, y, Xv, yv, random_state=3).values_
    d = make_valuer("data-oob", n_estimators=40, random_state=4, progress=False).fit(X, y, Xv, yv).values_
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, d)
    assert ((a >= 0) & (a <= 1)).all()


@pytest.mark.parametrize("learner", ["logistic", "tree"])
def test_data_oob_is_deterministic_for_each_learner(cancer, learner):
    X, y, Xv, yv, _ = cancer
    a = make_valuer("data-oob", n_estimators=30, learner=learner, random_state=1, progress=False).fit(X, y, Xv, yv)
    b = make_valuer("data-oob", n_estimators=30, learner=learner, random_state=1, progress=False).fit(X, y, Xv, yv)
    np.testing.assert_array_equal(a.values_, b.values_)


def test_bagged_logistic_heads_equal_scikit_learn_fits_per_bag(cancer):
    """All bootstrap heads fitted at once = scikit-learn's LogisticRegression (C = 1 / lam) on each bag's rows."""
    from sklearn.linear_model import LogisticRegression

    from ads.valuers.oob import bagged_logistic, bootstrap

    X, y, _, _, _ = cancer
    n = len(y)
    W = np.stack([np.bincount(bootstrap(n, 5, b)[0], minlength=n) for b in range(12)]).astype(np.float64)
    T, _ = bagged_logistic(X, y, 2, W, lam=0.5, tol=1e-10)
    for b in range(len(W)):
        inbag = bootstrap(n, 5, b)[0]
        sk = LogisticRegression(C=2.0, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(X[inbag], y[inbag])
        np.testing.assert_allclose(T[b, :-1, 0], sk.coef_[0], atol=1e-6)
        np.testing.assert_allclose(T[b, -1, 0], sk.intercept_[0], atol=1e-6)


def test_bagged_logistic_multiclass_heads_are_the_weighted_minimisers(digits_small):
    """Three classes (the chord-Newton path): every head's gradient of F_b vanishes, and it
    equals a per-bag damped-Newton fit on the repeated rows."""
    from ads.valuers.oob import bagged_logistic, bootstrap

    X, y = digits_small
    X, y = X[:150] / 16.0, y[:150]
    n = len(y)
    W = np.stack([np.bincount(bootstrap(n, 2, b)[0], minlength=n) for b in range(6)]).astype(np.float64)
    T, _ = bagged_logistic(X, y, 3, W, tol=1e-10)
    for b in range(len(W)):
        inbag = bootstrap(n, 2, b)[0]
        ref = inf.LogisticHead(tol=1e-12).fit(X[inbag], y[inbag], 3).theta_
        np.testing.assert_allclose(T[b], ref, atol=1e-6)


def test_bagged_logistic_one_step_is_the_newton_step_from_the_full_fit(cancer):
    """steps=1 = theta^ - H^-1 grad F_b(theta^), with theta^ scikit-learn's full-data fit and H the
    full-data Hessian written out by hand (binary)."""
    from sklearn.linear_model import LogisticRegression

    from ads.valuers.oob import bagged_logistic, bootstrap

    X, y, _, _, _ = cancer
    n, lam = len(y), 0.5
    W = np.stack([np.bincount(bootstrap(n, 4, b)[0], minlength=n) for b in range(8)]).astype(np.float64)
    T, refits = bagged_logistic(X, y, 2, W, lam=lam, steps=1)
    assert refits == 0
    sk = LogisticRegression(C=1 / lam, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(X, y)
    theta = np.append(sk.coef_[0], sk.intercept_[0])
    Xa = np.hstack([X, np.ones((n, 1))])
    q = 1 / (1 + np.exp(-Xa @ theta))
    pen = np.append(np.full(X.shape[1], lam), 0.0)
    H = Xa.T @ (Xa * (q * (1 - q))[:, None]) + np.diag(pen)
    for b in range(len(W)):
        g = Xa.T @ (W[b] * (q - y)) + pen * theta
        np.testing.assert_allclose(T[b, :, 0], theta - np.linalg.solve(H, g), atol=1e-6)
    exact, _ = bagged_logistic(X, y, 2, W, lam=lam, tol=1e-10)
    assert np.abs(T - exact).max() < np.abs(theta[None, :, None] - exact).max()  # the step moves towards the bag's fit


def test_bagged_logistic_chord_steps_converge_to_the_exact_heads(digits_small):
    """Many chord steps (three classes) reach the exact weighted minimisers."""
    from ads.valuers.oob import bagged_logistic, bootstrap

    X, y = digits_small
    X, y = X[:150] / 16.0, y[:150]
    n = len(y)
    W = np.stack([np.bincount(bootstrap(n, 2, b)[0], minlength=n) for b in range(4)]).astype(np.float64)
    exact, _ = bagged_logistic(X, y, 3, W, tol=1e-10)
    one, _ = bagged_logistic(X, y, 3, W, steps=1)
    many, _ = bagged_logistic(X, y, 3, W, steps=60)
    np.testing.assert_allclose(many, exact, atol=1e-6)
    assert np.abs(one - exact).max() > 1e-4  # one step is an approximation, not the fit


def test_data_oob_steps_checks_its_parameter(cancer):
    X, y, Xv, yv, _ = cancer
    with pytest.raises(ParameterError, match="steps"):
        make_valuer("data-oob", n_estimators=5, steps=1, progress=False).fit(X, y, Xv, yv)
    with pytest.raises(ParameterError, match="steps"):
        make_valuer("data-oob", n_estimators=5, learner="logistic", steps=0, progress=False).fit(X, y, Xv, yv)
    v = make_valuer("data-oob", n_estimators=30, learner="logistic", steps=1, random_state=0, progress=False)
    exact = make_valuer("data-oob", n_estimators=30, learner="logistic", random_state=0, progress=False)
    a, b = v.fit(X, y, Xv, yv).values_, exact.fit(X, y, Xv, yv).values_
    assert np.abs(a - b).mean() < 0.05 and np.corrcoef(a, b)[0, 1] > 0.8


def oob_reference(n, seed, n_estimators, score):
    """Data-OOB by a plain loop: ``score(inbag, rng)`` gives every point's T under estimator b
    (fitted on the in-bag rows); the mean over the estimators a point is out of bag for, the
    mean of those for points never out of bag."""
    from ads.valuers.oob import bootstrap

    tot, counts = np.zeros(n), np.zeros(n)
    for b in range(n_estimators):
        inbag, rng = bootstrap(n, seed, b)
        oob = np.ones(n, dtype=bool)
        oob[inbag] = False
        counts += oob
        tot += oob * score(inbag, rng)
    ref = np.where(counts > 0, tot / np.maximum(counts, 1), np.nan)
    ref[counts == 0] = np.nanmean(ref)
    return ref


def test_data_oob_logistic_counts_out_of_bag_hits(cancer):
    """The batched values equal a plain loop: per bag, sklearn fit on the in-bag rows, OOB hits / OOB counts."""
    from sklearn.linear_model import LogisticRegression

    X, y, Xv, yv, _ = cancer
    v = make_valuer("data-oob", n_estimators=20, learner="logistic", score="accuracy", random_state=7,
                    progress=False).fit(X, y, Xv, yv).values_
    ref = oob_reference(len(y), 7, 20, lambda inbag, _: LogisticRegression(tol=1e-12, max_iter=10000).fit(
        X[inbag], y[inbag]).predict(X) == y)
    np.testing.assert_allclose(v, ref, atol=1e-12)


def test_data_oob_proba_score_is_the_mean_out_of_bag_probability_of_the_label(cancer, digits_small):
    """score='proba' = a plain loop's mean over out-of-bag estimators of sklearn's p(y_i | x_i);
    trees fill classes a bag lacks with probability 0."""
    from sklearn.linear_model import LogisticRegression

    X, y, Xv, yv, _ = cancer
    n = len(y)
    v = make_valuer("data-oob", n_estimators=15, learner="logistic", score="proba", random_state=2,
                    progress=False).fit(X, y, Xv, yv).values_
    ref = oob_reference(n, 2, 15, lambda inbag, _: LogisticRegression(tol=1e-12, max_iter=10000).fit(
        X[inbag], y[inbag]).predict_proba(X)[np.arange(n), y])
    np.testing.assert_allclose(v, ref, atol=1e-6)
    hard = make_valuer("data-oob", n_estimators=15, learner="logistic", score="accuracy", random_state=2,
                       progress=False).fit(X, y, Xv, yv).values_
    assert len(np.unique(v)) > len(np.unique(hard))  # the proper score breaks the 0/1 score's ties
    Xd, yd = digits_small
    Xd, yd = Xd[:12] / 16.0, np.array([0] * 10 + [1, 2])  # rare classes: many bags lack one
    for learner in ("tree", "extra-tree"):
        t = make_valuer("data-oob", n_estimators=20, learner=learner, random_state=0, progress=False).fit(Xd, yd, Xd, yd).values_
        assert np.all((t >= 0) & (t <= 1)) and t[10:].max() < 1


def test_principal_components_match_scikit_learns_pca_up_to_sign(cancer):
    from sklearn.decomposition import PCA

    from ads.valuers.oob import principal_components

    X = cancer[0]
    for k in (1, 5, X.shape[1]):
        got = principal_components(X, k)
        want = PCA(n_components=k, svd_solver="full").fit_transform(X)
        assert got.shape == (len(X), k) and got.dtype == np.float32
        signs = np.sign((got * want).sum(axis=0))
        np.testing.assert_allclose(got, want * signs, atol=1e-4)


def test_data_oob_n_components_grows_the_trees_on_the_principal_components(cancer):
    from ads.valuers.oob import principal_components

    X, y, Xv, yv, _ = cancer
    a = make_valuer("data-oob", n_estimators=20, n_components=4, random_state=2, progress=False).fit(X, y, Xv, yv).values_
    b = make_valuer("data-oob", n_estimators=20, random_state=2, progress=False).fit(
        principal_components(X, 4), y, Xv[:, :4], yv).values_
    np.testing.assert_array_equal(a, b)
    c = make_valuer("data-oob", n_estimators=20, random_state=2, progress=False).fit(X, y, Xv, yv).values_
    assert not np.array_equal(a, c)


def test_data_oob_n_components_finds_flips_a_rotated_boundary_hides_from_single_coordinates():
    """Two classes apart along a random direction of 60 dimensions: axis-aligned splits on
    single coordinates see little of it, splits on the leading components see most."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n, d = 300, 60
    y = rng.integers(0, 2, n)
    u = rng.standard_normal(d)
    X = rng.standard_normal((n, d)) + np.outer(2.0 * (2 * y - 1), u / np.linalg.norm(u))
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.permutation(n)[:60]] = True
    yn = np.where(flipped, 1 - y, y)
    auc = {}
    for k in (None, 2):
        v = make_valuer("data-oob", n_estimators=40, n_components=k, random_state=0, progress=False).fit(X, yn, X, yn)
        auc[k] = roc_auc_score(flipped, -v.values_)
    assert auc[2] > 0.95 and auc[None] < 0.9  # measured: 0.984 and 0.873


def test_data_oob_auto_components_keeps_the_ensemble_with_the_higher_out_of_bag_score():
    """"auto" grows the trees on the coordinates and on 16 components and keeps the higher mean
    out-of-bag p(y|x): the components for a boundary along a random direction, the
    coordinates for one along a single low-variance coordinate that PCA ranks last."""
    rng = np.random.default_rng(1)
    n, d = 300, 60
    y = rng.integers(0, 2, n)
    u = rng.standard_normal(d)
    rotated = rng.standard_normal((n, d)) + np.outer(2.0 * (2 * y - 1), u / np.linalg.norm(u))
    axis = rng.standard_normal((n, d)) * 3.0
    axis[:, 0] = (2 * y - 1) * 0.8 + 0.3 * rng.standard_normal(n)
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.permutation(n)[:60]] = True
    yn = np.where(flipped, 1 - y, y)
    for X, want in ((rotated, 16), (axis, None)):
        auto = make_valuer("data-oob", n_estimators=30, n_components="auto", random_state=0, progress=False).fit(X, yn, X, yn)
        assert auto.n_components_ == want and set(auto.oob_scores_) == {None, 16}
        assert auto.oob_scores_[want] > auto.oob_scores_[16 if want is None else None]
        fixed = make_valuer("data-oob", n_estimators=30, n_components=want, random_state=0, progress=False).fit(X, yn, X, yn)
        np.testing.assert_array_equal(auto.values_, fixed.values_)
    small = make_valuer("data-oob", n_estimators=5, n_components="auto", random_state=0, progress=False)
    assert small.fit(rotated[:, :10], yn, rotated[:, :10], yn).n_components_ is None  # d <= 16: the coordinates only


def test_data_oob_n_components_checks_its_parameter(cancer):
    X, y, Xv, yv, _ = cancer
    for bad in (0, X.shape[1] + 1, 2.5, "all", True):
        with pytest.raises(ParameterError, match="n_components"):
            make_valuer("data-oob", n_estimators=5, n_components=bad, progress=False).fit(X, y, Xv, yv)
    with pytest.raises(ParameterError, match="n_components"):
        make_valuer("data-oob", n_estimators=5, learner="logistic", n_components=3, progress=False).fit(X, y, Xv, yv)


def test_data_oob_default_is_shallow_extra_trees_scored_by_label_probability(cancer):
    """The defaults (50 depth-8 extra trees, T = p(y|x)) = a plain loop over bags with scikit-learn's
    ExtraTreeClassifier seeded as documented (estimator b's RNG draws its seed after the bootstrap)."""
    from sklearn.tree import ExtraTreeClassifier

    X, y, Xv, yv, _ = cancer
    n = len(y)
    v = make_valuer("data-oob", random_state=5, progress=False).fit(X, y, Xv, yv).values_

    def p_label(inbag, rng):
        tree = ExtraTreeClassifier(max_features="sqrt", max_depth=8, random_state=int(rng.integers(2**31)))
        return tree.fit(X[inbag], y[inbag]).predict_proba(X)[np.arange(n), y]

    ref = oob_reference(n, 5, 50, p_label)
    np.testing.assert_allclose(v, ref, atol=1e-12)


def test_data_oob_papers_setting_equals_a_loop_over_cart_trees_on_the_repeated_rows(cancer):
    """learner='tree', full depth, 0/1 score (the paper's): fitted on the bootstrap's distinct rows with
    its counts as weights, the trees are those scikit-learn grows on the repeated rows."""
    from sklearn.tree import DecisionTreeClassifier

    X, y, Xv, yv, _ = cancer
    v = make_valuer("data-oob", n_estimators=25, learner="tree", max_depth=None, score="accuracy", random_state=3,
                    progress=False).fit(X, y, Xv, yv).values_

    def hit(inbag, rng):
        tree = DecisionTreeClassifier(max_features="sqrt", random_state=int(rng.integers(2**31)))
        return tree.fit(X[inbag], y[inbag]).predict(X) == y

    np.testing.assert_allclose(v, oob_reference(len(y), 3, 25, hit), atol=1e-12)


def test_representer_theorem_holds(cancer):
    """Theta = sum_i f_i alpha_i^T at the fitted head, so logits decompose over points."""
    X, y, Xv, yv, _ = cancer
    v = make_valuer("representer", progress=False).fit(X, y, Xv, yv)
    assert v.representer_error_ < 1e-4 * np.abs(v.theta_).max()
    F, Fv = np.hstack([X, np.ones((len(X), 1))]), np.hstack([Xv, np.ones((len(Xv), 1))])
    contrib = v.alpha_[:, yv] * (F @ Fv.T)  # (n, m): point i's share of val point t's true-class logit
    np.testing.assert_allclose(contrib.sum(axis=0), (Fv @ v.theta_)[np.arange(len(yv)), yv], atol=1e-3)
    np.testing.assert_allclose(contrib.mean(axis=1), v.values_, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- every valuer


FAST = {"dvrl": dict(iterations=200), "tmc-shapley": dict(max_permutations=300), "beta-shapley": dict(max_permutations=300),
        "data-oob": dict(n_estimators=100)}


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_valuer_values_flipped_labels_lower(cancer, name):
    X, y, Xv, yv, flipped = cancer
    assert name in VALUERS.available()
    params = {**FAST.get(name, {}), "progress": False}
    v = make_valuer(name, **params).fit(X, y, Xv, yv, n_classes=2, random_state=0).values_
    assert v.shape == (200,) and v.dtype == np.float64 and np.isfinite(v).all()
    assert v[flipped].mean() < v[~flipped].mean(), name


# ---------------------------------------------------------------- the CLI


CLI_PARAMS = {"dvrl": ["--dvrl-iterations", "20"], "tmc-shapley": ["--param", "max_permutations=64"],
              "beta-shapley": ["--param", "max_permutations=64", "--param", "alpha=4"],
              "data-oob": ["--param", "n_estimators=30"], "loo": ["--param", "utility=knn"],
              "influence": ["--param", "metric=accuracy"], "representer": ["--param", "target=self"]}


@pytest.mark.parametrize("name", BUILT_IN)
def test_ads_value_every_method(tmp_path, feature_stores, name):
    from tests.test_cli import read_csv, run

    out = tmp_path / "v.csv"
    r = run(["value", "--labeled", feature_stores["labeled"], "--val", feature_stores["val"], "--method", name,
             *CLI_PARAMS.get(name, []), "--out", out, "--json", "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    rows = read_csv(out)
    assert payload["method"] == name and payload["n"] == 200 == len(rows)
    got = np.array([float(x["value"]) for x in rows])
    assert np.isfinite(got).all() and got.std() > 0


def test_ads_value_params_match_the_library(tmp_path, feature_stores):
    from ads.pool import open_pool
    from tests.test_cli import read_csv, run

    out = tmp_path / "v.csv"
    r = run(["value", "--labeled", feature_stores["labeled"], "--val", feature_stores["val"], "--method", "beta-shapley",
             "--k", 5, "--param", "max_permutations=32", "--param", "alpha=2.5", "--seed", 4, "--out", out, "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    lab, val = open_pool(feature_stores["labeled"]), open_pool(feature_stores["val"])
    want = make_valuer("beta-shapley", k=5, max_permutations=32, alpha=2.5, random_state=4, progress=False).fit(
        lab.read_x(), lab.y(), val.read_x(), val.y(), n_classes=10).values_
    np.testing.assert_array_equal([float(x["value"]) for x in read_csv(out)], want)
    bad = run(["value", "--labeled", feature_stores["labeled"], "--method", "loo", "--param", "utility=svm",
               "--out", tmp_path / "b.csv"], tmp_path)
    assert bad.exit_code == 2 and "The 'utility' parameter of LOOValuer must be one of ['knn', 'logistic']" in bad.output
    bad = run(["value", "--labeled", feature_stores["labeled"], "--method", "influence", "--param", "bogus=1",
               "--out", tmp_path / "b.csv"], tmp_path)
    assert bad.exit_code == 2 and "Bad parameters for valuer 'influence'" in bad.output
    assert not (tmp_path / "b.csv").exists()


def test_value_report_features_and_images(tmp_path, feature_stores, image_stores):
    from tests.test_cli import run

    for stores in (feature_stores, image_stores):  # the image network trains once, then the cache serves it
        for suffix in (".png", ".html"):
            rep = tmp_path / f"low{suffix}"
            r = run(["value", "--labeled", stores["labeled"], "--val", stores["val"], "--method", "influence",
                     "--epochs", 2, "--out", tmp_path / "v.csv", "--report", rep, "--report-n", 16, "--overwrite", "-q"],
                    tmp_path)
            assert r.exit_code == 0, r.output
            data = rep.read_bytes()
            lowest = min(csv.DictReader(open(tmp_path / "v.csv")), key=lambda x: float(x["value"]))["id"]
            if suffix == ".png":
                assert data.startswith(b"\x89PNG")
            else:
                assert b"16 lowest influence values" in data and lowest.encode() in data
                assert (b"data:image/png;base64" in data) == (stores is image_stores)
    assert not list(tmp_path.glob(".low*.tmp-*"))
    r = run(["value", "--labeled", feature_stores["labeled"], "--out", tmp_path / "w.csv", "--report", tmp_path / "r.jpg"],
            tmp_path)
    assert r.exit_code == 2 and "must end in .png or .html" in r.output and not (tmp_path / "w.csv").exists()


def test_ads_value_python_api(feature_stores):
    import ads
    from ads.pool import open_pool

    ids, vals, info = ads.value(feature_stores["labeled"], feature_stores["val"], method="loo", k=5, progress=False)
    lab, val = open_pool(feature_stores["labeled"]), open_pool(feature_stores["val"])
    want = make_valuer("loo", k=5).fit(lab.read_x(), lab.y(), val.read_x(), val.y(), n_classes=10).values_
    assert list(ids) == list(lab.ids()) and info["valuer"] == "loo"
    np.testing.assert_array_equal(vals, want)
