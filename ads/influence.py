"""A multinomial logistic-regression head over embeddings, and its influence functions.

Model (class 0 is the reference, so the parameters are identifiable and, for two classes,
it is scikit-learn's binary ``LogisticRegression``): with x~ = [x, 1],

    z(x) = [0, x~ theta],  theta in R^{(d+1) x (C-1)},  p(x) = softmax(z(x)),
    F(theta) = sum_i w_i l_i(theta) + lam/2 ||theta[:d]||^2,  l_i = -log p_{y_i}(x_i),

the intercept unpenalised (lam = 1 is scikit-learn's C = 1). Parameters are flattened
row-major: index a * (C-1) + c for feature a and class c + 1.

Influence functions (Koh & Liang 2017). Upweighting training point i by eps moves the
minimiser by d theta / d eps = -H^{-1} grad l_i (their eq. 1, here in the sum form of F;
H = hess F at theta^). Removing the point (eps = -1) gives

    phi_i := theta^_{-i} - theta^  ~=  H^{-1} grad l_i                         (eq. 1, eps = -1)

and, for a differentiable validation metric psi(theta) (higher is better),

    psi(theta^_{-i}) - psi(theta^)  ~=  grad psi^T H^{-1} grad l_i              (eq. 2 with psi for L_test)

computed with one inverse-Hessian-vector product s = H^{-1} grad psi ("s_test") and one
pass over the training gradients. ``psi`` is the validation log-likelihood (eq. 2 itself)
or a smooth accuracy surrogate, the mean probability of the true class, the kind of
metric PUMA's psi generalises the test loss to.

Helpers, all on a fitted :class:`LogisticHead`: :func:`grad` (per-point gradients),
:func:`hessian`, :func:`hvp`, :func:`inverse_hvp` (exact Cholesky solve when the head has
at most ``exact_max`` parameters, conjugate gradients otherwise), :func:`psi`,
:func:`phi`, :func:`influence_on` and :func:`loo_params` (exact leave-one-out refits by
Newton steps from theta^ with the Hessian downdated by Woodbury).
"""

from __future__ import annotations

import numpy as np

from ads._validation import check_choice, check_int, check_positive_float

#: Most head parameters for which the Hessian is formed and factorised (8 * 4096^2 B = 128 MiB).
EXACT_MAX = 4096
#: Training rows per block when per-point gradients are formed (block x parameters floats).
GRAD_BLOCK = 1024
METRICS = ("loss", "accuracy")


def _augment(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _proba(Xa, theta):
    z = Xa @ theta
    z = np.concatenate([np.zeros(z.shape[:-1] + (1,)), z], axis=-1)
    z -= z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


class LogisticHead:
    """L2-regularised multinomial logistic regression, fitted to machine precision.

    Parameters
    ----------
    lam : float, default 1.0
        L2 penalty on the weights (not the intercept) in the sum-form objective F.
    max_iter : int, default 100
        Newton iterations (L-BFGS: 20 x as many).
    tol : float, default 1e-10
        Stop when the largest parameter step is below ``tol``.
    exact_max : int, default EXACT_MAX
        Up to this many parameters: Newton with the exact Hessian, and exact inverse-Hessian
        products; above: L-BFGS and conjugate gradients.
    """

    def __init__(self, lam: float = 1.0, max_iter: int = 100, tol: float = 1e-10, exact_max: int = EXACT_MAX):
        self.lam = lam
        self.max_iter = max_iter
        self.tol = tol
        self.exact_max = exact_max

    # ------------------------------------------------------------- fitting
    def fit(self, X, y, n_classes: int, sample_weight=None, theta0=None) -> LogisticHead:
        """Minimise F on (X, y) (float (n, d), int (n,) in [0, n_classes)); ``theta0`` warm-starts."""
        check_positive_float(self.lam, "lam", "LogisticHead")
        check_int(n_classes, "n_classes", "LogisticHead", min_value=2)
        Xa = _augment(X)
        self.n_classes_ = int(n_classes)
        k = self.n_classes_ - 1
        self.n_params_ = Xa.shape[1] * k
        Y = np.eye(self.n_classes_)[np.asarray(y, dtype=np.int64)]
        w = np.ones(len(Xa)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        pen = np.full((Xa.shape[1], 1), float(self.lam))
        pen[-1] = 0.0
        theta = np.zeros((Xa.shape[1], k)) if theta0 is None else np.array(theta0, dtype=np.float64)
        if self.n_params_ <= self.exact_max:
            theta = self._newton(Xa, Y, w, pen, theta)
        else:
            theta = self._lbfgs(Xa, Y, w, pen, theta)
        self.theta_ = theta
        return self

    @staticmethod
    def _objective(Xa, Y, w, pen, theta):
        P = _proba(Xa, theta)
        ll = np.log(np.clip((P * Y).sum(axis=1), 1e-300, None))
        return -float(w @ ll) + 0.5 * float((pen * theta**2).sum()), P

    def _newton(self, Xa, Y, w, pen, theta):
        for _ in range(self.max_iter):
            f0, P = self._objective(Xa, Y, w, pen, theta)
            g = Xa.T @ (w[:, None] * (P[:, 1:] - Y[:, 1:])) + pen * theta
            H = _hessian(Xa, P, w, pen)
            step = np.linalg.solve(H, g.reshape(-1)).reshape(theta.shape)
            t = 1.0
            while self._objective(Xa, Y, w, pen, theta - t * step)[0] > f0 + 1e-12 * max(1.0, abs(f0)) and t > 1e-8:
                t /= 2
            theta = theta - t * step
            if np.abs(t * step).max() < self.tol:
                break
        return theta

    def _lbfgs(self, Xa, Y, w, pen, theta):
        from scipy.optimize import minimize

        shape = theta.shape

        def fg(v):
            th = v.reshape(shape)
            f, P = self._objective(Xa, Y, w, pen, th)
            return f, (Xa.T @ (w[:, None] * (P[:, 1:] - Y[:, 1:])) + pen * th).reshape(-1)

        res = minimize(fg, theta.reshape(-1), jac=True, method="L-BFGS-B",
                       options={"maxiter": 20 * self.max_iter, "gtol": 1e-10, "ftol": 1e-15})
        return res.x.reshape(shape)

    # ------------------------------------------------------------- predictions
    def predict_proba(self, X) -> np.ndarray:
        """p(c | x), float64 (n, C)."""
        return _proba(_augment(X), self.theta_)

    def penalty(self) -> np.ndarray:
        """The L2 weights per parameter row, (d+1, 1): lam for features, 0 for the intercept."""
        pen = np.full((self.theta_.shape[0], 1), float(self.lam))
        pen[-1] = 0.0
        return pen


def _hessian(Xa, P, w, pen):
    """sum_i w_i x~_i x~_i^T (x) (diag(q_i) - q_i q_i^T) + diag(pen), q_i = p_i[1:]."""
    Q = P[:, 1:]
    k, d1 = Q.shape[1], Xa.shape[1]
    H = np.zeros((d1, k, d1, k))
    for a in range(k):
        for b in range(a, k):
            c = w * Q[:, a] * ((a == b) - Q[:, b])
            block = Xa.T @ (Xa * c[:, None])
            H[:, a, :, b] = block
            H[:, b, :, a] = block
    H = H.reshape(d1 * k, d1 * k)
    H[np.diag_indices(d1 * k)] += np.repeat(pen[:, 0], k)
    return H


# ----------------------------------------------------------------- helpers (Koh & Liang)
def residuals(head: LogisticHead, X, y) -> np.ndarray:
    """r_i = p_i[1:] - onehot(y_i)[1:], (n, C-1): grad l_i = x~_i (x) r_i."""
    P = head.predict_proba(X)
    return P[:, 1:] - np.eye(head.n_classes_)[np.asarray(y, dtype=np.int64)][:, 1:]


def grad(head: LogisticHead, X, y) -> np.ndarray:
    """Per-point gradients of the loss l_i, (n, p); n x p floats, so pass blocks of rows."""
    Xa = _augment(X)
    R = residuals(head, X, y)
    return (Xa[:, :, None] * R[:, None, :]).reshape(len(Xa), -1)


def hessian(head: LogisticHead, X, sample_weight=None) -> np.ndarray:
    """Hessian of F at the fitted parameters, (p, p)."""
    Xa = _augment(X)
    w = np.ones(len(Xa)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return _hessian(Xa, _proba(Xa, head.theta_), w, head.penalty())


def hvp(head: LogisticHead, X, v) -> np.ndarray:
    """H v without forming H: O(n d C) per product. ``v`` (p,) -> (p,)."""
    Xa = _augment(X)
    Q = _proba(Xa, head.theta_)[:, 1:]
    V = np.asarray(v, dtype=np.float64).reshape(head.theta_.shape)
    Z = Xa @ V
    AZ = Q * Z - Q * (Q * Z).sum(axis=1, keepdims=True)  # (diag(q) - q q^T) z per row
    return (Xa.T @ AZ + head.penalty() * V).reshape(-1)


def inverse_hvp(head: LogisticHead, X, v, *, method: str = "auto", tol: float = 1e-10, max_iter: int | None = None):
    """H^{-1} v: Cholesky solve of the exact Hessian (``exact``) or conjugate gradients
    with :func:`hvp` (``cg``); ``auto`` takes exact up to ``head.exact_max`` parameters.
    ``v`` may be (p,) or (p, r) for r right-hand sides."""
    check_choice(method, ("auto", "exact", "cg"), "method", "inverse_hvp")
    v = np.asarray(v, dtype=np.float64)
    if method == "exact" or (method == "auto" and head.n_params_ <= head.exact_max):
        from scipy.linalg import cho_factor, cho_solve

        return cho_solve(cho_factor(hessian(head, X)), v)
    from scipy.sparse.linalg import LinearOperator, cg

    p = head.n_params_
    op = LinearOperator((p, p), matvec=lambda u: hvp(head, X, u), dtype=np.float64)
    cols = v.reshape(p, -1)
    out = np.empty_like(cols)
    for j in range(cols.shape[1]):
        out[:, j], _ = cg(op, cols[:, j], rtol=tol, atol=0.0, maxiter=max_iter or 10 * p)
    return out.reshape(v.shape)


def psi(head: LogisticHead, X_val, y_val, metric: str = "loss"):
    """A differentiable validation metric psi (higher is better) and its gradient (p,).

    ``loss``: mean log-likelihood (1/m) sum_t log p_{y_t}(x_t), i.e. minus Koh & Liang's
    test loss. ``accuracy``: the smooth accuracy surrogate (1/m) sum_t p_{y_t}(x_t), whose
    gradient is (1/m) sum_t x~_t (x) p_{y_t} (onehot(y_t) - p_t)[1:].
    """
    check_choice(metric, METRICS, "metric", "psi")
    Xa = _augment(X_val)
    P = _proba(Xa, head.theta_)
    y_val = np.asarray(y_val, dtype=np.int64)
    Y = np.eye(head.n_classes_)[y_val]
    py = P[np.arange(len(y_val)), y_val]
    if metric == "loss":
        value = float(np.log(np.clip(py, 1e-300, None)).mean())
        G = Xa.T @ (Y[:, 1:] - P[:, 1:])
    else:
        value = float(py.mean())
        G = Xa.T @ (py[:, None] * (Y[:, 1:] - P[:, 1:]))
    return value, (G / len(y_val)).reshape(-1)


def influence_on(head: LogisticHead, X, y, direction, *, block: int = GRAD_BLOCK) -> np.ndarray:
    """grad l_i . direction for every training point, (n,), in blocks of rows: with
    ``direction = H^{-1} grad psi`` this is psi(theta^_{-i}) - psi(theta^) to first order."""
    D = np.asarray(direction, dtype=np.float64).reshape(head.theta_.shape)
    out = np.empty(len(X))
    for s in range(0, len(X), block):
        xb = _augment(X[s:s + block])
        out[s:s + block] = ((xb @ D) * residuals(head, X[s:s + block], y[s:s + block])).sum(axis=1)
    return out


def phi(head: LogisticHead, X, y, rows=None, *, method: str = "auto") -> np.ndarray:
    """phi_i = H^{-1} grad l_i ~= theta^_{-i} - theta^ for the training points ``rows``
    (default all), (len(rows), p). One inverse-Hessian product per row: for a value of
    every point on a metric, use :func:`psi` and :func:`influence_on` instead."""
    rows = np.arange(len(X)) if rows is None else np.asarray(rows, dtype=np.int64)
    G = grad(head, np.asarray(X)[rows], np.asarray(y)[rows])
    return inverse_hvp(head, X, G.T, method=method).T


def self_influence(head: LogisticHead, X, y, *, block: int = GRAD_BLOCK) -> np.ndarray:
    """grad l_i^T H^{-1} grad l_i, (n,): how much point i's own loss rises when it is
    removed (large for mislabeled points). Exact Hessian only."""
    from scipy.linalg import cho_factor, cho_solve

    cf = cho_factor(hessian(head, X))
    out = np.empty(len(X))
    for s in range(0, len(X), block):
        G = grad(head, X[s:s + block], y[s:s + block])
        out[s:s + block] = (G * cho_solve(cf, G.T).T).sum(axis=1)
    return out


def loo_params(head: LogisticHead, X, y, rows, *, max_iter: int = 100, tol: float = 1e-10, Hinv=None) -> np.ndarray:
    """Exact leave-one-out parameters, (len(rows), d+1, C-1): theta^_{-i} = argmin F - l_i.

    Newton-type steps from theta^ with the Hessian downdated by point i's block
    (H - x~ x~^T (x) A_i, A_i = diag(q_i) - q_i q_i^T, inverted by Woodbury from H^{-1}),
    and halved per model until F - l_i decreases, iterated until the model's step is below
    ``tol`` or ``max_iter``: every model is retrained (nearly) to convergence, many points at
    a time, and a model that has converged leaves the block (most need 6-7 steps, a few 15).
    These chord steps converge linearly; on near-separable data a high-leverage point can
    stop at a parameter error near 1e-6 (validation metric error ~1e-8). Exact Hessian only
    (``head.n_params_ <= head.exact_max``); pass ``Hinv = inv(hessian(head, X))`` when
    calling it for several blocks of rows.
    """
    Xa = _augment(X)
    rows = np.asarray(rows, dtype=np.int64)
    Y = np.eye(head.n_classes_)[np.asarray(y, dtype=np.int64)]
    pen = head.penalty()
    theta = head.theta_
    P0 = _proba(Xa, theta)
    if Hinv is None:
        Hinv = np.linalg.inv(_hessian(Xa, P0, np.ones(len(Xa)), pen))
    B, k, D = len(rows), theta.shape[1], head.n_params_
    x = Xa[rows]
    q = P0[rows, 1:]
    A = q[:, :, None] * (np.eye(k)[None] - q[:, None, :])
    ev, V = np.linalg.eigh(A)
    L = V * np.sqrt(np.clip(ev, 0, None))[:, None, :]  # A = L L^T
    U = (x[:, :, None, None] * L[:, None, :, :]).reshape(B, D, k)  # point i's Hessian block = U U^T
    W = np.matmul(Hinv, U)
    M = np.linalg.inv(np.eye(k)[None] - np.matmul(U.transpose(0, 2, 1), W))
    keep = np.ones((B, len(Xa)))
    keep[np.arange(B), rows] = 0.0

    def objective(th, models):  # F - l_i of the given models, and their probabilities
        P = _proba(Xa[None], th)
        ll = np.log(np.clip((P * Y[None]).sum(axis=-1), 1e-300, None))
        return -(keep[models] * ll).sum(axis=1) + 0.5 * (pen[None] * th**2).sum(axis=(1, 2)), P

    thetas = np.repeat(theta[None], B, axis=0)
    act = np.arange(B)  # models still moving; a model leaves once its step is below tol
    f, P = objective(thetas, act)
    for _ in range(max_iter):
        th, xr = thetas[act], x[act]
        R = P[:, :, 1:] - Y[None, :, 1:]
        g = np.matmul(Xa.T, R) + pen[None] * th
        g -= xr[:, :, None] * R[np.arange(len(act)), rows[act]][:, None, :]  # without point i's term
        g = g.reshape(len(act), D)
        Wa = W[act]
        wg = np.matmul(g[:, None, :], Wa)
        step = (g @ Hinv + np.matmul(np.matmul(wg, M[act].transpose(0, 2, 1)), Wa.transpose(0, 2, 1))[:, 0]).reshape(th.shape)
        # the downdated Hessian at theta^ is positive definite, so -step descends; halve it
        # per model until F - l_i decreases (undamped chord steps can cycle)
        t = np.ones(len(act))
        new = th - step
        f_new, P_new = objective(new, act)
        for _ in range(30):
            bad = np.flatnonzero(f_new > f + 1e-12 * np.maximum(1.0, np.abs(f)))
            if not bad.size:
                break
            t[bad] /= 2
            new[bad] = th[bad] - t[bad, None, None] * step[bad]
            f_new[bad], P_new[bad] = objective(new[bad], act[bad])
        thetas[act] = new
        moving = np.abs(t[:, None, None] * step).max(axis=(1, 2)) >= tol
        act, f, P = act[moving], f_new[moving], P_new[moving]
        if not act.size:
            break
    return thetas


def metric_at(theta, X_val, y_val, metric: str, *, augmented: bool = False) -> np.ndarray:
    """Validation metric at parameters ``theta`` ((d+1, C-1) or a stack (B, d+1, C-1)):
    ``loss`` = mean log-likelihood, ``accuracy`` = hard accuracy. Shape theta.shape[:-2].
    ``augmented``: X_val already carries the column of ones (:func:`_augment`)."""
    P = _proba(X_val if augmented else _augment(X_val), theta)
    y_val = np.asarray(y_val, dtype=np.int64)
    if metric == "accuracy":
        return (P.argmax(axis=-1) == y_val).mean(axis=-1)
    py = np.take_along_axis(P, np.broadcast_to(y_val[:, None], P.shape[:-1] + (1,)), -1)[..., 0]
    return np.log(np.clip(py, 1e-300, None)).mean(axis=-1)
