"""Representer-point values (Yeh et al. 2018, "Representer Point Selection").

A softmax head Theta ((d+1) x C, on f_i = [x_i, 1]) is trained to a stationary point of

    (1/n) sum_i L(y_i, Theta^T f_i) + lam ||Theta||^2,

so (their Theorem 3.1) Theta = sum_i f_i alpha_i^T with alpha_i = -1/(2 lam n) dL/dz_i =
(onehot(y_i) - p_i) / (2 lam n), and every logit decomposes over training points:
z(x_t) = sum_i alpha_i (f_i . f_t). The value of point i is

- ``target="validation"`` (default): its mean contribution to the true-class logit of the
  validation points, (1/m) sum_t alpha_{i, y_t} (f_i . f_t) (sum_c alpha_ic = 0, so this
  is also its contribution to the logit margin over the class mean); computed as
  sum_c alpha_ic f_i . S_c with S_c the sum of f_t over class-c validation points, O(n d C);
- ``target="self"``: minus the self-contribution alpha_{i, y_i} ||f_i||^2 (= (1 - p_{i,y_i})
  ||f_i||^2 / (2 lam n) >= 0, large for points the head fits against their label), the
  paper's dataset-debugging ranking.

The head is fitted by L-BFGS to a gradient norm of 1e-10 so the representer identity holds
(``representer_error_`` is max |Theta - sum_i f_i alpha_i^T|).
"""

from __future__ import annotations

import numpy as np

from ads._validation import check_choice, check_int, check_positive_float
from ads.valuers.base import VALUERS, Valuer, check_fit_inputs


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_softmax_head(F, y, n_classes: int, lam: float, max_iter: int = 2000) -> np.ndarray:
    """Theta minimising (1/n) sum CE + lam ||Theta||^2 on features F (n, d+1), (d+1, C)."""
    from scipy.optimize import minimize

    n, D = F.shape
    Y = np.eye(n_classes)[y]

    def fg(v):
        T = v.reshape(D, n_classes)
        Z = F @ T
        Z -= Z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(Z).sum(axis=1))
        f = float((lse - (Z * Y).sum(axis=1)).mean() + lam * (T**2).sum())
        P = np.exp(Z - lse[:, None])
        return f, (F.T @ (P - Y) / n + 2 * lam * T).reshape(-1)

    res = minimize(fg, np.zeros(D * n_classes), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": 1e-10, "ftol": 1e-16})
    return res.x.reshape(D, n_classes)


@VALUERS.register
class RepresenterValuer(Valuer):
    """Representer-point values (see :mod:`ads.valuers.representer`).

    Parameters
    ----------
    lam : float, default 1e-3
        L2 weight decay of the head (the paper's lambda).
    target : {"validation", "self"}, default "validation"
    max_iter : int, default 2000 (L-BFGS)
    progress : bool, default True (nothing long enough to show for now)
    """

    name = "representer"

    def __init__(self, lam: float = 1e-3, target: str = "validation", max_iter: int = 2000, progress: bool = True):
        self.lam = lam
        self.target = target
        self.max_iter = max_iter
        self.progress = progress

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        X, y, X_val, y_val, C = check_fit_inputs(X, y, X_val, y_val, n_classes, "RepresenterValuer")
        lam = check_positive_float(self.lam, "lam", "RepresenterValuer")
        check_choice(self.target, ("validation", "self"), "target", "RepresenterValuer")
        check_int(self.max_iter, "max_iter", "RepresenterValuer", min_value=1)
        n = len(y)
        F = np.hstack([X, np.ones((n, 1))])
        theta = fit_softmax_head(F, y, C, lam, self.max_iter)
        P = _softmax(F @ theta)
        alpha = (np.eye(C)[y] - P) / (2 * lam * n)  # (n, C), Theorem 3.1
        self.theta_, self.alpha_ = theta, alpha
        self.representer_error_ = float(np.abs(theta - F.T @ alpha).max())
        if self.target == "self":
            self.values_ = -alpha[np.arange(n), y] * (F * F).sum(axis=1)
            return self
        Fv = np.hstack([X_val, np.ones((len(y_val), 1))])
        S = np.zeros((C, F.shape[1]))
        np.add.at(S, y_val, Fv)  # S_c = sum of f_t over validation points of class c
        self.values_ = (alpha * (F @ S.T)).sum(axis=1) / len(y_val)
        return self
