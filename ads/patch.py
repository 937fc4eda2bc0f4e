"""PUMA: remove labeled points' influence from a trained logistic-regression head, keeping a
performance metric within delta, without retraining (Wu, Hu et al., "PUMA: Performance
Unchanged Model Augmentation for Training Data Removal", AAAI 2022).

The model patched is the head over the embeddings (:class:`ads.influence.LogisticHead`,
multinomial logistic regression with L2 ``lam``), where the Hessian is exact and tractable.
The backbone that made the embeddings is frozen: **it keeps whatever it learned from the
removed points**; only the head forgets them.

Notation (sample weights w, 1 for a plain fit; F_w = sum_i w_i l_i + lam/2 ||theta||^2):

- phi(z) = H^{-1} grad L_t(z, theta_org), H = hess F_w(theta_org): the parameter change of
  removing z (:func:`ads.influence.phi`; removing z with weight w_z moves theta by w_z phi(z));
- C a performance metric, higher is better (:data:`METRICS`), evaluated on the training data
  that remain (or on given points). PUMA's psi(z) = grad C(theta_org)^T phi(z) is computed
  here for a *vector* C = (C_1, ..., C_m), C_g the mean metric over one group of evaluation
  points (by default one group per class), so that psi(z) in R^m and the compensation keeps
  every class's performance, not only their average; with one group it is the scalar psi;
- compensation (PUMA's eq. for lambda*), over D_up = the remaining points with weight > 0::

      lambda* = argmin_{lambda >= 0} ||sum_{j in D_up} lambda_j psi(z_j) - sum_{k in D_mk} w_k psi(z_k)||^2 + Omega(lambda)

  with the sparsifying Omega(lambda) = alpha (rho ||lambda||_1 + (1 - rho)/2 ||lambda||^2)
  (an elastic net, solved by scikit-learn's coordinate descent with ``positive=True``:
  lambda_j >= 0 up-weights point j, few points are touched; the 512 points of D_up most
  aligned with the target, psi(z_j) . sum_k psi(z_k) largest, are its candidates);
- patch (PUMA's model update)::

      theta_mod = theta_org + eta [sum_k w_k phi(z_k) - sum_j lambda*_j phi(z_j)]
                = theta_org + eta H^{-1} [sum_k w_k g_k - sum_j lambda*_j g_j]   (one solve)

  the sample weights become w_k -> (1 - eta) w_k on D_mk (0 for a full patch) and
  w_j -> w_j + eta lambda_j on D_up;
- predicted change of the scalar C (the evaluation points' mean metric):
  eta [sum_k w_k psi(z_k) - sum_j lambda_j psi(z_j)] (the compensation's part is
  -eta sum_j lambda_j psi(z_j)); the measured change is C(theta_mod) - C(theta_org). eta is
  the largest of 1, 1/2, 1/4, ... (down to 2^-20, else 0: no patch) with
  |C(theta_mod) - C(theta_org)| <= delta, so the patch never breaks the delta promise on the
  evaluation data.

:func:`puma` is the algorithm; :class:`HeadModel`, :func:`save_model` and
:func:`load_model` are the model directory that ``ads select --save-model`` writes and
``ads patch`` reads and writes.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ads import influence as inf
from ads._validation import check_choice, check_int, check_labels, check_matrix, check_percent, check_positive_float
from ads.errors import DataError, ParameterError, StoreError

#: Metrics C (higher is better), smooth so that grad C exists: ``loss`` the mean
#: log-likelihood, ``accuracy`` the mean true-class probability, ``ece`` minus the mean
#: squared gap between the top-class confidence and correctness, -(1/n) sum (max_c p_ic -
#: 1[argmax p_i = y_i])^2, a differentiable surrogate of the expected calibration error
#: (the indicator is piecewise constant, so only the confidence is differentiated).
METRICS = ("loss", "accuracy", "ece")
#: Halvings of eta tried before giving up (eta = 0, no patch).
MAX_HALVINGS = 20
MODEL_FORMAT = "ads-head-1"
_OWNER = "puma"


# ----------------------------------------------------------------- the metric C
def _metric_terms(theta, Xa, y, metric):
    """Per-point metric values v_i (n,) and U (n, C-1) with grad_theta v_i = x~_i (x) U_i."""
    P = inf._proba(Xa, theta)
    n = len(y)
    Y = np.eye(P.shape[1])[y]
    py = P[np.arange(n), y]
    if metric == "loss":
        return np.log(np.clip(py, 1e-300, None)), (Y - P)[:, 1:]
    if metric == "accuracy":
        return py, (py[:, None] * (Y - P))[:, 1:]
    top = P.argmax(axis=1)
    conf = P[np.arange(n), top]
    gap = conf - (top == y)
    E = np.eye(P.shape[1])[top]
    return -gap**2, (-2 * gap * conf)[:, None] * (E - P)[:, 1:]


def metric_value(theta, X, y, metric: str) -> float:
    """The scalar C at ``theta``: the mean over (X, y) of the smooth metric (:data:`METRICS`)."""
    check_choice(metric, METRICS, "metric", "metric_value")
    return float(_metric_terms(np.asarray(theta), inf._augment(X), np.asarray(y, dtype=np.int64), metric)[0].mean())


def expected_calibration_error(P, y, bins: int = 15) -> float:
    """The (binned, hard) expected calibration error of probabilities P (n, C): sum over
    equal-width confidence bins of |bin| / n * |accuracy - mean confidence| (Guo et al. 2017)."""
    P = np.asarray(P)
    conf, pred = P.max(axis=1), P.argmax(axis=1)
    correct = pred == np.asarray(y)
    idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


# ----------------------------------------------------------------- weighted Hessian solves
def _solver(head, X, w):
    """v -> H_w^{-1} v for the Hessian of F_w at head.theta_ (Cholesky, or CG for big heads)."""
    if head.n_params_ <= head.exact_max:
        from scipy.linalg import cho_factor, cho_solve

        cf = cho_factor(inf.hessian(head, X, sample_weight=w))
        return lambda v: cho_solve(cf, v)
    from scipy.sparse.linalg import LinearOperator, cg

    Xa = inf._augment(X)
    Q = inf._proba(Xa, head.theta_)[:, 1:]
    pen = head.penalty()
    p = head.n_params_

    def hv(u):
        V = u.reshape(head.theta_.shape)
        Z = Xa @ V
        AZ = w[:, None] * (Q * Z - Q * (Q * Z).sum(axis=1, keepdims=True))
        return (Xa.T @ AZ + pen * V).reshape(-1)

    op = LinearOperator((p, p), matvec=hv, dtype=np.float64)

    def solve(v):
        cols = np.asarray(v, dtype=np.float64).reshape(p, -1)
        out = np.empty_like(cols)
        for j in range(cols.shape[1]):
            out[:, j], _ = cg(op, cols[:, j], rtol=1e-10, atol=0.0, maxiter=10 * p)
        return out.reshape(np.shape(v))

    return solve


def _weighted_grad_sum(head, X, y, coef) -> np.ndarray:
    """sum_i coef_i grad l_i, (p,), without forming the per-point gradients."""
    R = inf.residuals(head, X, y)
    return (inf._augment(X).T @ (coef[:, None] * R)).reshape(-1)


def reweight(head: inf.LogisticHead, X, y, weights, new_weights) -> np.ndarray:
    """The influence-function parameters after changing the sample weights w -> w',
    theta^ - H_w^{-1} sum_i (w'_i - w_i) grad l_i (Koh & Liang's eq. 1 summed; removal of i is
    w'_i = 0, i.e. + w_i phi_i). Returns theta (d+1, C-1); e.g. re-adding removed points."""
    X = check_matrix(X, "X", "reweight")
    y = check_labels(y, "y", "reweight", n=X.shape[0], n_classes=head.n_classes_)
    w = np.asarray(weights, dtype=np.float64)
    dw = np.asarray(new_weights, dtype=np.float64) - w
    if w.shape != y.shape or dw.shape != y.shape:
        raise DataError(f"The weights of reweight must have {len(y)} entries each.")
    if not np.any(dw):
        return head.theta_.copy()
    return head.theta_ - _solver(head, X, w)(_weighted_grad_sum(head, X, y, dw)).reshape(head.theta_.shape)


# ----------------------------------------------------------------- PUMA
@dataclass
class PatchResult:
    """What :func:`puma` did. ``head`` is a copy of the input head with the patched theta."""

    head: inf.LogisticHead
    theta: np.ndarray
    weights: np.ndarray  # new sample weights ((1 - eta) w on the removed points, w + eta lambda on the compensating ones)
    eta: float  # the share of the removal done (1: the marked points are out; steps > 1: sum of eta_t / T)
    lambdas: np.ndarray  # (n,) the compensation applied, eta lambda*_j (summed over steps; 0 outside D_up)
    predicted_change: float
    measured_change: float
    metric: str
    metric_before: float
    metric_after: float
    delta: float
    removed: np.ndarray
    predicted_group_change: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seconds: float = 0.0

    @property
    def n_compensating(self) -> int:
        return int(np.count_nonzero(self.lambdas))


#: Columns of D_up kept for the elastic net: those most aligned with the target (A_j . b
#: largest, the quantity the L1 optimality condition screens on; a strong-rule-style cut).
SCREEN = 512


def _solve_lambda(A, b, alpha, l1_ratio):
    """lambda* >= 0 of the elastic-net problem ||A lambda - b||^2 + Omega(lambda), A (m, n_up)."""
    lam = np.zeros(A.shape[1])
    if not np.any(b) or A.shape[1] == 0:
        return lam
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import ElasticNet

    corr = A.T @ b
    cols = np.flatnonzero(corr > 0)
    if cols.size == 0:
        return lam
    if cols.size > SCREEN:
        cols = cols[np.argsort(-corr[cols], kind="stable")[:SCREEN]]
    scale = np.abs(A[:, cols]).max() or 1.0  # coordinate descent on O(1) numbers
    As, bs = A[:, cols] / scale, b / scale
    amax = max(float((As.T @ bs).max()), 1e-300) / (len(bs) * l1_ratio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        en = ElasticNet(alpha=alpha * amax, l1_ratio=l1_ratio, fit_intercept=False, positive=True, max_iter=5000,
                        tol=1e-8, selection="cyclic").fit(As, bs)
    lam[cols] = en.coef_
    return lam


def puma(head: inf.LogisticHead, X, y, remove, *, metric: str = "accuracy", delta: float = 0.01, weights=None,
         X_eval=None, y_eval=None, groups=None, compensate: bool = True, alpha: float = 1e-3, l1_ratio: float = 0.5,
         line_search: bool = True, steps: int = 1) -> PatchResult:
    """Remove the training points ``remove`` from a fitted head by PUMA (module docstring).

    Parameters
    ----------
    head : LogisticHead
        Fitted on (X, y) with sample weights ``weights`` (default all 1).
    X : float (n, d), y : int (n,)
        Its training data.
    remove : int array or bool mask (n,)
        Rows to remove (D_mk); rows already at weight 0 change nothing.
    metric : {"loss", "accuracy", "ece"}
        The performance metric C (:data:`METRICS`).
    delta : float >= 0
        Largest allowed |C(theta_mod) - C(theta_org)| on the evaluation points.
    X_eval, y_eval : optional
        Where C is evaluated; default the remaining training points (weight > 0, not removed).
    groups : int array (n_eval,), optional
        The groups g of the vector metric C_g; default the classes of the evaluation points.
    compensate : bool
        False: plain influence removal, theta + eta sum_k w_k phi(z_k) (lambda = 0).
    alpha, l1_ratio : float
        Omega's strength, as a share of the smallest alpha with lambda* = 0, and its L1 share rho.
    line_search : bool
        False: eta = 1 whatever the measured change (the delta check is still reported).
    steps : int >= 1
        1: PUMA's single update. T > 1: the removal in T equal shares, each a PUMA update
        re-linearised at the current theta and weights (H, phi, psi and lambda* recomputed),
        for large removals where one first-order step falls short of retraining; the delta
        check applies to the cumulative change, and a stage with eta < 1 is the last.

    Returns
    -------
    PatchResult
    """
    t0 = time.perf_counter()
    check_choice(metric, METRICS, "metric", _OWNER)
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating)) or not (delta >= 0 and np.isfinite(delta)):
        raise ParameterError(f"The 'delta' parameter of {_OWNER} must be a number >= 0. Got {delta!r}.")
    check_positive_float(alpha, "alpha", _OWNER)
    steps = check_int(steps, "steps", _OWNER, min_value=1)
    if not (0 < l1_ratio <= 1):
        raise ParameterError(f"The 'l1_ratio' parameter of {_OWNER} must be a number in (0, 1]. Got {l1_ratio!r}.")
    X = check_matrix(X, "X", _OWNER)
    y = check_labels(y, "y", _OWNER, n=X.shape[0], n_classes=head.n_classes_)
    n = len(y)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).copy()
    if w.shape != (n,) or not np.all(np.isfinite(w)) or (w < 0).any():
        raise DataError(f"The 'weights' parameter of {_OWNER} must be {n} finite numbers >= 0.")
    mk = np.zeros(n, dtype=bool)
    rem = np.asarray(remove)
    if rem.dtype == bool:
        if rem.shape != (n,):
            raise DataError(f"The 'remove' mask of {_OWNER} must have {n} entries. Got {rem.shape}.")
        mk = rem.copy()
    elif rem.size:
        if not np.issubdtype(rem.dtype, np.integer) or rem.min() < 0 or rem.max() >= n:
            raise DataError(f"The 'remove' rows of {_OWNER} must be ints in [0, {n}). Got {rem!r}.")
        mk[rem] = True
    mk &= w > 0
    keep = ~mk & (w > 0)
    if X_eval is None:
        Xe, ye = X[keep], y[keep]
    else:
        Xe = check_matrix(X_eval, "X_eval", _OWNER, dim=X.shape[1])
        ye = check_labels(y_eval, "y_eval", _OWNER, n=Xe.shape[0], n_classes=head.n_classes_)
    if len(ye) == 0:
        raise DataError(f"{_OWNER} has no points to evaluate the metric on (every point removed).")
    g = ye if groups is None else np.asarray(groups)
    if g.shape != ye.shape:
        raise DataError(f"The 'groups' parameter of {_OWNER} must have one entry per evaluation point ({len(ye)}).")
    labels, gi = np.unique(g, return_inverse=True)
    share = np.bincount(gi, minlength=len(labels)) / len(ye)  # scalar C = sum_g share_g C_g

    theta0 = head.theta_
    Xae = inf._augment(Xe)
    c0 = float(_metric_terms(theta0, Xae, ye, metric)[0].mean())

    def measured(theta):
        return float(_metric_terms(theta, Xae, ye, metric)[0].mean()) - c0

    per_stage = np.where(mk, w, 0.0) / steps
    cur, theta, w_cur = copy.copy(head), theta0, w.copy()
    lam_total, group_total, pred_total, done = np.zeros(n), np.zeros(len(labels)), 0.0, 0.0
    change = 0.0
    for _ in range(steps if mk.any() else 0):
        cur.theta_ = theta
        step, lam, group_pred = _stage(cur, X, y, w_cur, mk, keep, per_stage, Xae, ye, gi, len(labels), metric, compensate,
                                       alpha, l1_ratio)
        eta, change_eta = 1.0, measured(theta + step)
        if line_search:
            for _ in range(MAX_HALVINGS):
                if abs(change_eta) <= delta:
                    break
                eta /= 2
                change_eta = measured(theta + eta * step)
            else:
                if abs(change_eta) > delta:
                    break
        theta, change = theta + eta * step, change_eta
        w_cur = w_cur - eta * per_stage + eta * lam
        lam_total += eta * lam
        group_total += eta * group_pred
        pred_total += eta * float(share @ group_pred)
        done += eta / steps
        if eta < 1.0:
            break
    out = copy.copy(head)
    out.theta_ = theta
    return PatchResult(head=out, theta=theta, weights=w_cur, eta=done if mk.any() else 1.0, lambdas=lam_total,
                       predicted_change=pred_total, measured_change=change, metric=metric, metric_before=c0,
                       metric_after=c0 + change, delta=float(delta), removed=np.flatnonzero(mk),
                       predicted_group_change=group_total, seconds=time.perf_counter() - t0)


def _stage(head, X, y, w, mk, keep, amount, Xae, ye, gi, m, metric, compensate, alpha, l1_ratio):
    """One PUMA step at head.theta_ with weights w: remove ``amount`` (n,) of the marked points,
    compensate over D_up = ``keep``. Returns the parameter step (eta = 1), lambda* (n,) and the
    predicted change of each group's C_g."""
    _, U = _metric_terms(head.theta_, Xae, ye, metric)
    # grad C_g (p, m): group means of x~ (x) U
    Jc = np.stack([(Xae[gi == k].T @ U[gi == k]).reshape(-1) / (gi == k).sum() for k in range(m)], axis=1)
    solve = _solver(head, X, w)
    S = solve(Jc)  # H^{-1} grad C_g, (p, m): psi_g(z) = grad l(z) . S[:, g]
    Psi = np.stack([inf.influence_on(head, X, y, S[:, k]) for k in range(m)], axis=1)  # (n, m)
    b = (amount[mk, None] * Psi[mk]).sum(axis=0)  # sum_k w_k psi(z_k)
    lam = np.zeros(len(y))
    if compensate:
        up = np.flatnonzero(keep)
        lam[up] = _solve_lambda(Psi[up].T, b, alpha, l1_ratio)
    coef = amount - lam  # removal weights w_k and compensation -lambda_j
    step = solve(_weighted_grad_sum(head, X, y, coef)).reshape(head.theta_.shape)
    return step, lam, b - lam @ Psi


# ----------------------------------------------------------------- the model directory
@dataclass
class HeadModel:
    """A fitted head and the embeddings it was fitted on: what ``ads patch`` needs.

    ``X`` (n, d) float32 embeddings of the labeled points, ``y`` (n,), ``ids`` (n,) str,
    ``weights`` (n,) the sample weights of the fit (1, or PUMA's after a patch), ``X_val``,
    ``y_val`` the validation embeddings, ``theta`` (d+1, C-1), ``lam``, ``classes``.
    """

    theta: np.ndarray
    lam: float
    classes: list
    X: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    weights: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    meta: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, X, y, ids, X_val, y_val, classes, *, lam: float = 1.0, meta=None) -> HeadModel:
        head = inf.LogisticHead(lam=lam).fit(X, y, len(classes))
        return cls(head.theta_, float(lam), list(classes), np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64),
                   np.asarray(ids).astype(str), np.ones(len(y)), np.asarray(X_val, dtype=np.float32),
                   np.asarray(y_val, dtype=np.int64), dict(meta or {}))

    def head(self) -> inf.LogisticHead:
        h = inf.LogisticHead(lam=self.lam)
        h.n_classes_ = len(self.classes)
        h.n_params_ = self.theta.size
        h.theta_ = np.asarray(self.theta, dtype=np.float64)
        return h


_ARRAYS = ("theta", "X", "y", "weights", "X_val", "y_val")


def save_model(path, model: HeadModel) -> Path:
    """Write ``model`` as a directory (atomically): head.json, ids.json and one .npy per array."""
    from ads._io import atomic_dir

    with atomic_dir(path, what="model directory") as tmp:
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", np.asarray(getattr(model, name)), allow_pickle=False)
        (tmp / "ids.json").write_text(json.dumps([str(i) for i in model.ids]))
        (tmp / "head.json").write_text(json.dumps({"format": MODEL_FORMAT, "lam": model.lam, "classes": model.classes,
                                                   "n": int(len(model.y)), "dim": int(model.X.shape[1]), **model.meta},
                                                  indent=1))
    return Path(path)


def load_model(path) -> HeadModel:
    """Read a model directory written by :func:`save_model`; a missing or broken one is a StoreError."""
    path = Path(path)
    what = f"model directory {str(path)!r}"
    if not (path / "head.json").is_file():
        raise StoreError(f"{what} has no head.json: write one with `ads select --save-model DIR` (or ads patch --out).")
    try:
        info = json.loads((path / "head.json").read_text())
        arrays = {n: np.load(path / f"{n}.npy", allow_pickle=False) for n in _ARRAYS}
        ids = np.array(json.loads((path / "ids.json").read_text()), dtype=str)
    except (OSError, ValueError) as e:
        raise StoreError(f"{what} is unreadable: {e}.") from None
    if info.get("format") != MODEL_FORMAT:
        raise StoreError(f"{what} has format {info.get('format')!r}; expected {MODEL_FORMAT!r}.")
    n, C = len(arrays["y"]), len(info["classes"])
    X, th = arrays["X"], arrays["theta"]
    if X.ndim != 2 or X.shape[0] != n or len(ids) != n or arrays["weights"].shape != (n,) or \
            th.shape != (X.shape[1] + 1, C - 1) or arrays["X_val"].shape[1:] != X.shape[1:]:
        raise StoreError(f"{what} is inconsistent: arrays of mismatched shapes.")
    meta = {k: v for k, v in info.items() if k not in ("format", "lam", "classes", "n", "dim")}
    return HeadModel(th, float(info["lam"]), list(info["classes"]), X, arrays["y"], ids, arrays["weights"], arrays["X_val"],
                     arrays["y_val"], meta)


# ----------------------------------------------------------------- patching a saved model
def lowest_rows(model: HeadModel, percent: float, *, valuer=None, seed: int = 0) -> np.ndarray:
    """Rows of the lowest-valued ``percent`` % of the model's points still in it (weight > 0),
    valued by ``valuer`` (default :class:`ads.valuers.InfluenceValuer`) on its embeddings."""
    percent = check_percent(percent, "remove-lowest", "ads patch")
    from ads.valuers import InfluenceValuer

    active = np.flatnonzero(model.weights > 0)
    valuer = valuer or InfluenceValuer(lam=model.lam)
    valuer.fit(model.X[active], model.y[active], model.X_val, model.y_val, n_classes=len(model.classes), random_state=seed)
    n = int(np.ceil(percent / 100 * active.size))
    return active[np.argsort(np.asarray(valuer.values_), kind="stable")[:n]]


def rows_of(model: HeadModel, ids) -> np.ndarray:
    """The rows of ``ids`` in the model; unknown ids are a ParameterError naming a few."""
    row = {str(i): r for r, i in enumerate(model.ids)}
    ids = [str(i) for i in ids]
    unknown = [i for i in ids if i not in row]
    if unknown:
        raise ParameterError(f"{len(unknown)} of the {len(ids)} ids to remove are not in the model "
                             f"(e.g. {', '.join(map(repr, unknown[:3]))}).")
    return np.array(sorted({row[i] for i in ids}), dtype=np.int64)


def patch_model(model: HeadModel, rows, *, metric: str = "accuracy", delta: float = 0.01, **kw):
    """PUMA on a :class:`HeadModel`: the patched model and the report of ``ads patch``
    (predicted/measured change of C, accuracy on the removed points and on validation,
    before and after, seconds) plus details (eta, lambda count, ...)."""
    t0 = time.perf_counter()
    head = model.head()
    X = model.X.astype(np.float64)
    res = puma(head, X, model.y, rows, metric=metric, delta=delta, weights=model.weights, **kw)

    def acc(theta, Xs, ys):
        return float((inf._proba(inf._augment(Xs), theta).argmax(1) == ys).mean()) if len(ys) else float("nan")

    rows = res.removed
    Xv = model.X_val.astype(np.float64)
    report = {"predicted_change": res.predicted_change, "measured_change": res.measured_change,
              "removed_accuracy_before": acc(head.theta_, X[rows], model.y[rows]),
              "removed_accuracy_after": acc(res.theta, X[rows], model.y[rows]),
              "val_accuracy_before": acc(head.theta_, Xv, model.y_val), "val_accuracy_after": acc(res.theta, Xv, model.y_val),
              "seconds": time.perf_counter() - t0}
    details = {"metric": metric, "delta": float(delta), "eta": res.eta, "n_removed": int(rows.size),
               "n_compensating": res.n_compensating, "metric_before": res.metric_before, "metric_after": res.metric_after}
    meta = dict(model.meta)
    meta["patches"] = [*meta.get("patches", []), {**details, "removed": [str(model.ids[r]) for r in rows]}]
    patched = HeadModel(res.theta, model.lam, model.classes, model.X, model.y, model.ids, res.weights, model.X_val,
                        model.y_val, meta)
    return patched, report, details


# ----------------------------------------------------------------- a patched network
def head_proba(theta, emb) -> np.ndarray:
    """Class probabilities (float32, (n, C)) of the head ``theta`` on embeddings ``emb``."""
    return inf._proba(inf._augment(emb), theta).astype(np.float32)


class PatchedNetwork:
    """A trained embedder (``transform(x) -> (embeddings, probabilities)``) whose class
    probabilities come from a patched head over its embeddings: what the loop's
    ``--patch-lowest`` evaluates and picks with. The embeddings are the network's own (its
    backbone keeps what it learned from the removed points); only the probabilities, and so
    the predictions, change. Pickles (for Dask workers) when the network does."""

    def __init__(self, net, theta, val_accuracy: float):
        self.net = net
        self.theta = np.asarray(theta, dtype=np.float64)
        self.val_accuracy_ = float(val_accuracy)
        self.arch_ = f"{net.arch_}+patched-head"

    def head_proba(self, emb) -> np.ndarray:
        return head_proba(self.theta, emb)

    def transform(self, x, *args, **kw):
        emb, _ = self.net.transform(x, *args, **kw)
        return emb, self.head_proba(emb)

    def predict_proba(self, x):
        return self.transform(x)[1]
