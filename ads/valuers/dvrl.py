"""DVRL (Yoon, Arik, Pfister 2020) as a valuer; the algorithm is :mod:`ads.dvrl`."""

from __future__ import annotations

from ads._validation import check_random_state
from ads.valuers.base import VALUERS, Valuer


@VALUERS.register
class DVRLValuer(Valuer):
    """DVRL values of the training points; ``params`` go to :class:`ads.dvrl.DVRL`."""

    name = "dvrl"

    def __init__(self, **params):
        self.params = params

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        from ads.dvrl import DVRL

        params = dict(self.params)
        if params.get("random_state") is None:
            params["random_state"] = check_random_state(random_state, "DVRLValuer")
        self.model_ = DVRL(**params).fit(X, y, X_val, y_val, n_classes=n_classes)
        self.values_ = self.model_.values_
        return self

    def get_params(self) -> dict:
        return dict(self.params)
