"""Valuers: the value of every labeled point, from its embeddings and a validation set.

A valuer follows the scikit-learn convention: ``__init__`` stores its parameters, ``fit``
computes ``values_`` (float64, one per training point, higher = more useful). One module
per method; each docstring ties the code to the paper's equation:

- ``knn-shapley`` (:mod:`.knn`): exact KNN-Shapley (Jia et al. 2019, Theorem 1);
- ``dvrl`` (:mod:`.dvrl`): DVRL (Yoon, Arik, Pfister 2020);
- ``loo`` (:mod:`.loo`): leave-one-out, closed form for the KNN utility, exact refits or
  the influence approximation for a logistic-regression head;
- ``tmc-shapley``, ``beta-shapley`` (:mod:`.montecarlo`): truncated Monte Carlo Data
  Shapley (Ghorbani & Zou 2019) and Beta Shapley (Kwon & Zou 2022) on a KNN or
  logistic-regression utility (:mod:`.utility`);
- ``data-oob`` (:mod:`.oob`): Data-OOB (Kwon & Zou 2023);
- ``influence`` (:mod:`.influence`, on :mod:`ads.influence`): influence functions
  (Koh & Liang 2017) on a logistic-regression head;
- ``representer`` (:mod:`.representer`): representer points (Yeh et al. 2018).

Third-party valuers register through the entry-point group ``ads.valuers``.
:func:`value` is the library call behind ``ads value``; :mod:`.report` draws the
lowest-valued items for ``ads value --report``.
"""

from ads.valuers.base import VALUERS, Valuer, make_valuer
from ads.valuers.dvrl import DVRLValuer
from ads.valuers.influence import InfluenceValuer
from ads.valuers.knn import KNNShapleyValuer
from ads.valuers.loo import LOOValuer
from ads.valuers.montecarlo import BetaShapleyValuer, TMCShapleyValuer
from ads.valuers.oob import DataOOBValuer
from ads.valuers.representer import RepresenterValuer
from ads.valuers.stores import value

__all__ = ["VALUERS", "Valuer", "make_valuer", "value", "KNNShapleyValuer", "DVRLValuer", "LOOValuer",
           "TMCShapleyValuer", "BetaShapleyValuer", "DataOOBValuer", "InfluenceValuer", "RepresenterValuer"]
