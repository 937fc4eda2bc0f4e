"""Monte Carlo semivalues: TMC-Shapley (Ghorbani & Zou 2019) and Beta Shapley (Kwon & Zou 2022).

Both value point i as a semivalue of a utility V (:mod:`ads.valuers.utility`),

    phi(i) = sum_{S subset of D minus i} omega(|S|) [V(S + i) - V(S)],
    omega(s) = Beta(s + beta, n - 1 - s + alpha) / Beta(alpha, beta),

Kwon & Zou 2022's Beta(alpha, beta) weights (their w_{alpha,beta}(j) / n with j = s + 1);
alpha = beta = 1 gives omega(s) = s! (n-1-s)! / n!, the Shapley value (Ghorbani & Zou 2019,
eq. 1). Grouping subsets by size, phi(i) = sum_j P(j) E_{|S| = j-1}[V(S + i) - V(S)] with
P(j) = C(n-1, j-1) omega(j-1), a Beta-binomial law on j. In a uniformly random permutation
a point sits at a uniform position j and its predecessors are a uniform set of size j - 1,
so n P(j) times its marginal contribution is an unbiased sample of phi(i): the estimator
averages these over permutations (n P(j) = 1 for Shapley: Ghorbani & Zou's Algorithm 1).

Truncation (Algorithm 1): once |V(D) - V(prefix)| < truncation * |V(D)| the rest of the
permutation contributes 0 (0 = no truncation, unbiased). ``weight_tol`` > 0 skips the
positions whose weight n P(j) is below weight_tol x the largest (Beta Shapley's late
positions), which estimates the semivalue with those weights set to 0; ``max_positions`` caps
the positions scanned outright (a budget: the semivalue over subsets of fewer than
max_positions points). Permutations are drawn in
rounds; each round runs ``n_chains`` independent chains of ``batch`` permutations (seeded
by (seed, round, chain) through :func:`ads.valuers.base.stream`, so the result does not depend on
``n_jobs`` and no permutation is the caller's own ``default_rng(seed)`` shuffle), in parallel with
joblib. Convergence, checked after each round once ``min_permutations`` are done:
``relative`` (Ghorbani & Zou 2019, Sec. 3.1, on the mean instead of per point so values
near 0 do not stall it): mean_i |phi_t - phi_{t-1 round}| / mean_i |phi_t| < ``rtol``;
``gelman-rubin`` (as Kwon & Zou 2022): the largest potential scale reduction R-hat over
points, between chains, < ``rhat``. ``max_permutations`` caps the run either way.

Memory: the utility's (KNN: n x m int32 ranks plus P x m x K slots) and 2 x n_chains x n
running sums; no permutation-by-point table is kept.
"""

from __future__ import annotations

import math

import numpy as np

from ads._validation import check_choice, check_int, check_positive_float
from ads.errors import ParameterError
from ads.valuers.base import VALUERS, Valuer, check_fit_inputs, progress_bar, resolve_seed, stream
from ads.valuers.utility import make_utility


def position_weights(n: int, alpha: float = 1.0, beta: float = 1.0) -> np.ndarray:
    """n P(j) for positions j = 1..n, (n,): the weight of a marginal contribution seen at
    position j of a permutation (all ones for alpha = beta = 1)."""
    from scipy.special import betaln, gammaln

    s = np.arange(n, dtype=np.float64)
    log_p = gammaln(n) - gammaln(s + 1) - gammaln(n - s) + betaln(s + beta, n - 1 - s + alpha) - betaln(alpha, beta)
    return n * np.exp(log_p)


def weight_cutoff(weights, weight_tol: float) -> int:
    """Positions scanned: up to the last j with weight >= weight_tol x the largest (n for 0)."""
    if weight_tol <= 0:
        return weights.size
    return int(np.flatnonzero(weights >= weight_tol * weights.max()).max()) + 1


def _chain_batch(utility, seed: int, round_: int, chain: int, size: int, weights, truncation: float, stop=None):
    """Sums and sums of squares, per point, of ``size`` weighted permutation samples
    (positions from ``stop`` on count 0)."""
    n = weights.size
    stop = n if stop is None else stop
    rng = stream(seed, "montecarlo", round_, chain)
    perms = np.stack([rng.permutation(n) for _ in range(size)])
    contrib = utility.scan(perms[:, :stop], truncation) * weights[None, :stop]
    per = np.zeros((size, n))
    np.put_along_axis(per, perms[:, :stop], contrib, axis=1)  # per[p, i]: point i's sample in permutation p
    return per.sum(axis=0), (per**2).sum(axis=0)


class MonteCarloSemivalue(Valuer):
    """Shared machinery; subclasses fix (alpha, beta). Parameters are documented on
    :class:`TMCShapleyValuer` and :class:`BetaShapleyValuer`."""

    alpha: float = 1.0
    beta: float = 1.0

    def __init__(self, utility: str = "knn", k: int = 10, metric: str = "loss", lam: float = 1.0, fit_tol: float = 1e-3,
                 truncation: float = 0.01, weight_tol: float = 0.0, max_positions: int | None = None, convergence: str = "relative", rtol: float = 0.05, rhat: float = 1.05,
                 min_permutations: int = 100, max_permutations: int = 1000, batch: int = 16, n_chains: int = 4,
                 n_jobs: int | None = 1, random_state=None, progress: bool = True):
        self.utility = utility
        self.k = k
        self.metric = metric
        self.lam = lam
        self.fit_tol = fit_tol
        self.truncation = truncation
        self.weight_tol = weight_tol
        self.max_positions = max_positions
        self.convergence = convergence
        self.rtol = rtol
        self.rhat = rhat
        self.min_permutations = min_permutations
        self.max_permutations = max_permutations
        self.batch = batch
        self.n_chains = n_chains
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.progress = progress

    def _check_params(self, owner):
        check_choice(self.utility, ("knn", "logistic"), "utility", owner)
        check_choice(self.convergence, ("relative", "gelman-rubin"), "convergence", owner)
        if isinstance(self.truncation, bool) or not isinstance(self.truncation, (int, float)) or self.truncation < 0:
            raise ParameterError(f"The 'truncation' parameter of {owner} must be a number >= 0. Got {self.truncation!r}.")
        if isinstance(self.weight_tol, bool) or not isinstance(self.weight_tol, (int, float)) or not 0 <= self.weight_tol < 1:
            raise ParameterError(f"The 'weight_tol' parameter of {owner} must be a number in [0, 1). Got {self.weight_tol!r}.")
        if self.max_positions is not None:
            check_int(self.max_positions, "max_positions", owner, min_value=1)
        check_positive_float(self.rtol, "rtol", owner)
        check_positive_float(self.fit_tol, "fit_tol", owner)
        if not (isinstance(self.rhat, (int, float)) and self.rhat > 1):
            raise ParameterError(f"The 'rhat' parameter of {owner} must be a number > 1. Got {self.rhat!r}.")
        check_int(self.min_permutations, "min_permutations", owner, min_value=1)
        check_int(self.max_permutations, "max_permutations", owner, min_value=1)
        check_int(self.batch, "batch", owner, min_value=1)
        check_int(self.n_chains, "n_chains", owner, min_value=2 if self.convergence == "gelman-rubin" else 1)
        if self.n_jobs is not None:
            check_int(self.n_jobs, "n_jobs", owner, min_value=-1)
        check_positive_float(self.alpha, "alpha", owner)
        check_positive_float(self.beta, "beta", owner)

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        owner = type(self).__name__
        X, y, X_val, y_val, C = check_fit_inputs(X, y, X_val, y_val, n_classes, owner)
        self._check_params(owner)
        seed = resolve_seed(self.random_state, random_state, owner)
        n, nc = len(y), int(self.n_chains)
        util = make_utility(self.utility, k=self.k, metric=self.metric, lam=self.lam, tol=float(self.fit_tol)).bind(X, y, X_val, y_val, C)
        weights = position_weights(n, self.alpha, self.beta)
        stop = weight_cutoff(weights, float(self.weight_tol))
        if self.max_positions is not None:
            stop = min(stop, int(self.max_positions))
        self.positions_ = stop
        self.dropped_weight_ = float(weights[stop:].sum() / n)  # P(position > stop): the mass left out
        sums, sq = np.zeros((nc, n)), np.zeros((nc, n))
        per_chain, round_, prev = 0, 0, None
        self.converged_, self.history_ = False, []
        with progress_bar(self.max_permutations, self.name, self.progress, unit="perm") as bar:
            while per_chain * nc < self.max_permutations:
                size = min(self.batch, math.ceil((self.max_permutations - per_chain * nc) / nc))
                args = [(util, seed, round_, c, size, weights, float(self.truncation), stop) for c in range(nc)]
                if self.n_jobs == 1:
                    results = [_chain_batch(*a) for a in args]
                else:
                    from joblib import Parallel, delayed

                    results = Parallel(n_jobs=self.n_jobs)(delayed(_chain_batch)(*a) for a in args)
                for c, (s, q) in enumerate(results):
                    sums[c] += s
                    sq[c] += q
                per_chain += size
                round_ += 1
                bar.update(size * nc)
                est = sums.sum(axis=0) / (per_chain * nc)
                stat = self._statistic(est, prev, sums, sq, per_chain)
                self.history_.append((per_chain * nc, stat))
                prev = est
                if per_chain * nc >= self.min_permutations and stat is not None and self._converged(stat):
                    self.converged_ = True
                    break
        total = per_chain * nc
        self.n_permutations_ = total
        self.values_ = sums.sum(axis=0) / total
        var = (sq.sum(axis=0) - total * self.values_**2) / max(total - 1, 1)
        self.stderr_ = np.sqrt(np.clip(var, 0, None) / total)
        return self

    def _statistic(self, est, prev, sums, sq, T):
        if self.convergence == "relative":
            if prev is None:
                return None
            scale = np.abs(est).mean()
            return float(np.abs(est - prev).mean() / scale) if scale > 0 else 0.0
        if T < 2:
            return None
        mu = sums / T
        within = ((sq - T * mu**2) / (T - 1)).mean(axis=0)
        between = mu.var(axis=0, ddof=1)
        ok = within > 1e-300
        if not ok.any():
            return 1.0
        v = (T - 1) / T * within[ok] + between[ok]
        return float(np.sqrt(v / within[ok]).max())

    def _converged(self, stat) -> bool:
        return stat < self.rtol if self.convergence == "relative" else stat < self.rhat


@VALUERS.register
class TMCShapleyValuer(MonteCarloSemivalue):
    """Truncated Monte Carlo Data Shapley (Ghorbani & Zou 2019, Algorithm 1).

    phi(i) = E_pi[V(pi_{<i} + i) - V(pi_{<i})] (their eq. 1 as an expectation over
    permutations), estimated by averaging marginal contributions over random permutations
    with truncation; see :mod:`ads.valuers.montecarlo` for sampling and convergence.

    Parameters
    ----------
    utility : {"knn", "logistic"}, default "knn"
        V(S): Jia et al.'s KNN utility (``k``), or the validation ``metric`` ("loss" = mean
        log-likelihood, the default, or "accuracy") of an L2 (``lam``) logistic-regression
        head trained on S (one warm-started refit per prefix: slow beyond a few hundred
        points). Log-likelihood is the default because validation accuracy moves in steps
        of 1/m and most marginal contributions are 0: on UCI Adult (1,000 points, 20 %
        flipped, 20 permutations, 3 seeds) it found flipped labels with AUC 0.799 against
        0.686 (benchmarks/results/valuers_ablation.md).
    fit_tol : float, default 1e-3
        Logistic utility: a prefix fit stops once a step moves no parameter by more than
        this (LogisticHead's ``tol``; heads above ``ads.influence.EXACT_MAX`` parameters are
        refitted by L-BFGS to its own tolerance instead). The marginal contributions are
        differences of validation log-likelihoods of heads a point apart, so a fit within
        1e-3 of its minimiser moves them far less than the Monte Carlo error: on SMS spam
        (2,000 points, 3 seeds, 10 permutations) 1e-3 gave the same detection AUC as 1e-8
        (0.772) in 12.5 s instead of 20.4 s (benchmarks/results/valuers_tmc_budget.md).
    truncation : float, default 0.01
        Relative performance tolerance of Algorithm 1 (0 = none).
    weight_tol : float, default 0 (Beta Shapley: 1e-3)
        Positions j whose weight n P(j) is below ``weight_tol`` x the largest (for Beta
        Shapley with alpha > beta: the late ones, large prefixes, where a refit costs most)
        are not evaluated; their samples count 0. This estimates the semivalue with those
        weights set to 0; the left-out probability mass sum_{j > stop} P(j) is
        ``dropped_weight_`` (Beta(16, 1), n = 1,000, 1e-3: positions 1..372 are scanned and
        6e-4 of the mass is left out). No effect for Shapley (all weights 1).
    max_positions : int, optional
        Scan at most the first ``max_positions`` positions of each permutation (a fixed
        budget of refits per permutation; None = no cap). This estimates the semivalue over
        subsets of fewer than max_positions points (later weights set to 0, mass left out in
        ``dropped_weight_``): small prefixes are where a flipped label's harm shows, and
        with the log-likelihood utility the performance truncation above seldom triggers,
        so each permutation otherwise refits all n prefixes. On SMS spam (2,000 points, 20 %
        flipped, 3 seeds, one chain of 10 permutations) 100 positions found flipped labels
        with AUC 0.608 in 1.1 s and 200 with 0.668 in 2.5 s, against 0.772 in 20 s for the
        full scan of 12 permutations (fit_tol 1e-8; benchmarks/results/valuers_tmc_budget.md).
    convergence : {"relative", "gelman-rubin"}; rtol (0.05), rhat (1.05)
    min_permutations, max_permutations : int, default 100, 1000
    batch, n_chains : int, default 16, 4
        Permutations per chain per round, chains per round (run in parallel).
    n_jobs : int, default 1
        joblib workers (processes) over chains; -1 = all cores.
    random_state : int, optional; progress : bool, default True (tqdm on stderr)

    Attributes
    ----------
    values_, stderr_ : (n,) float64
        Estimates and their Monte Carlo standard errors.
    n_permutations_, converged_, history_ : permutations used, whether the criterion was
        met before ``max_permutations``, (permutations, statistic) after each round.
    positions_, dropped_weight_ : positions scanned per permutation, and the weight left out.
    """

    name = "tmc-shapley"


@VALUERS.register
class BetaShapleyValuer(MonteCarloSemivalue):
    """Beta Shapley (Kwon & Zou 2022): the semivalue with Beta(alpha, beta) weights
    omega(s) = Beta(s + beta, n-1-s + alpha) / Beta(alpha, beta) (their eq. for
    w_{alpha,beta}, divided by n); alpha > beta weighs small subsets more, where a noisy
    label's harm shows (the paper recommends Beta(16, 1), the default). Same Monte Carlo
    machinery and parameters as :class:`TMCShapleyValuer`, plus ``alpha``, ``beta``;
    alpha = beta = 1 is Data Shapley. Default truncation 0 and ``weight_tol`` 1e-3: the
    positions that weigh less than 1e-3 of the first are skipped instead (on UCI Adult,
    1,000 points, 20 permutations, the same values as scanning all positions at a quarter
    of the time with per-prefix Newton fits, as multi-class heads use; binary heads' chord
    fits make late positions cheap, so there it saves little; benchmarks/results/valuers_ablation.md).
    """

    name = "beta-shapley"

    def __init__(self, alpha: float = 16.0, beta: float = 1.0, *, truncation: float = 0.0, weight_tol: float = 1e-3,
                 **params):
        super().__init__(truncation=truncation, weight_tol=weight_tol, **params)
        self.alpha = alpha
        self.beta = beta
