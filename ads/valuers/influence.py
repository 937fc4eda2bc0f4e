"""Influence-function values (Koh & Liang 2017) on a logistic-regression head.

The head (:class:`ads.influence.LogisticHead`, L2 ``lam``) is trained on the embeddings;
with s = H^{-1} grad psi (one inverse-Hessian-vector product: exact Cholesky when the head
has at most ``exact_max`` parameters, conjugate gradients otherwise),

    value_i = psi(theta^) - psi(theta^_{-i}) ~= -grad l_i^T H^{-1} grad psi       (eq. 2, eps = -1/n)

the first-order drop of the validation metric psi when point i is removed (positive: the
point helps). ``metric="loss"`` makes psi the validation mean log-likelihood (eq. 2
itself); ``metric="accuracy"`` the smooth accuracy surrogate mean_t p_{y_t}(x_t)
(:func:`ads.influence.psi`, the psi a PUMA-style patch would target).
``target="self"`` instead gives value_i = -grad l_i^T H^{-1} grad l_i, minus the
self-influence (how much the point's own loss rises without it; largest for mislabeled
points), exact Hessian only. Memory: the Hessian (p x p) if exact, else O(n d C).
"""

from __future__ import annotations

from ads._validation import check_choice, check_int, check_positive_float
from ads.valuers.base import VALUERS, Valuer, check_fit_inputs


@VALUERS.register
class InfluenceValuer(Valuer):
    """Influence of every training point on a validation metric (see module docstring).

    Parameters
    ----------
    lam : float, default 1.0
    metric : {"loss", "accuracy"}, default "loss"
    target : {"validation", "self"}, default "validation"
    method : {"auto", "exact", "cg"}, default "auto"
    exact_max : int, default 4096
        Largest head (parameters = (d + 1)(C - 1)) with an exact Hessian.
    progress : bool, default True (nothing long enough to show for now)
    """

    name = "influence"

    def __init__(self, lam: float = 1.0, metric: str = "loss", target: str = "validation", method: str = "auto",
                 exact_max: int = 4096, progress: bool = True):
        self.lam = lam
        self.metric = metric
        self.target = target
        self.method = method
        self.exact_max = exact_max
        self.progress = progress

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        from ads import influence as inf

        X, y, X_val, y_val, C = check_fit_inputs(X, y, X_val, y_val, n_classes, "InfluenceValuer")
        check_positive_float(self.lam, "lam", "InfluenceValuer")
        check_choice(self.metric, inf.METRICS, "metric", "InfluenceValuer")
        check_choice(self.target, ("validation", "self"), "target", "InfluenceValuer")
        check_choice(self.method, ("auto", "exact", "cg"), "method", "InfluenceValuer")
        check_int(self.exact_max, "exact_max", "InfluenceValuer", min_value=1)
        head = inf.LogisticHead(lam=self.lam, exact_max=self.exact_max).fit(X, y, C)
        self.head_ = head
        if self.target == "self":
            self.values_ = -inf.self_influence(head, X, y)
            return self
        self.psi_, g = inf.psi(head, X_val, y_val, self.metric)
        self.s_test_ = inf.inverse_hvp(head, X, g, method=self.method)
        self.values_ = -inf.influence_on(head, X, y, self.s_test_)
        return self
