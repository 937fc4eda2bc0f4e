"""Run one pyDVL 0.10 valuation method on a benchmark .npz; run with the pyDVL env's python.

Usage: python pydvl_valuers_runner.py DATA.npz METHOD VALUES.npy BUDGET [MAX_SECONDS]

METHOD: loo | tmc-shapley | beta-shapley | data-oob | knn-shapley. The utility of loo,
tmc-shapley and beta-shapley is the validation accuracy of scikit-learn's
LogisticRegression (pyDVL's ModelUtility + SupervisedScorer, default 0 when a fit fails);
BUDGET is the permutations (MaxUpdates) of tmc-shapley / beta-shapley (Beta(16, 1)), the
trees of data-oob (a RandomForestClassifier, as pyDVL's docs), K of knn-shapley. MAX_SECONDS
(default none) adds a MaxTime stop. Prints one JSON line: seconds of the fit, versions.
"""

import json
import sys
import time

import numpy as np


def main():
    data_path, method, out_path, budget = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    max_s = float(sys.argv[5]) if len(sys.argv) > 5 else None

    import pydvl
    import sklearn
    from joblib import parallel_config
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    from pydvl.valuation.dataset import Dataset
    from pydvl.valuation.methods.beta_shapley import BetaShapleyValuation
    from pydvl.valuation.methods.data_oob import DataOOBValuation
    from pydvl.valuation.methods.knn_shapley import KNNShapleyValuation
    from pydvl.valuation.methods.loo import LOOValuation
    from pydvl.valuation.methods.shapley import TMCShapleyValuation
    from pydvl.valuation.samplers.permutation import PermutationSampler
    from pydvl.valuation.samplers.truncation import RelativeTruncation
    from pydvl.valuation.scorers.supervised import SupervisedScorer
    from pydvl.valuation.stopping import MaxTime, MaxUpdates
    from pydvl.valuation.utility.modelutility import ModelUtility

    with np.load(data_path) as z:
        x_train, y_train, x_val, y_val = (z[n] for n in ("x_train", "y_train", "x_val", "y_val"))
    train, val = Dataset(x_train, y_train), Dataset(x_val, y_val)
    utility = ModelUtility(LogisticRegression(max_iter=1000), SupervisedScorer("accuracy", val, default=0.0, range=(0, 1)))
    stop = (MaxUpdates(budget) | MaxTime(max_s) if max_s else MaxUpdates(budget)) if budget >= 1 else None
    if method == "loo":
        valuation = LOOValuation(utility)
    elif method == "tmc-shapley":
        valuation = TMCShapleyValuation(utility, truncation=RelativeTruncation(rtol=0.01, burn_in_fraction=0.4),
                                        is_done=stop, seed=0)
    elif method == "beta-shapley":
        sampler = PermutationSampler(truncation=RelativeTruncation(rtol=0.01, burn_in_fraction=0.4), seed=0)
        valuation = BetaShapleyValuation(utility, sampler=sampler, is_done=stop, alpha=16, beta=1)
    elif method == "data-oob":
        valuation = None
    elif method == "knn-shapley":
        valuation = KNNShapleyValuation(KNeighborsClassifier(n_neighbors=budget), val, progress=False)
    else:
        raise SystemExit(f"unknown method {method}")

    t0 = time.perf_counter()
    with parallel_config(n_jobs=1):
        if method == "data-oob":  # fitting the forest is part of the method's cost
            forest = RandomForestClassifier(n_estimators=budget, random_state=0).fit(x_train, y_train)
            valuation = DataOOBValuation(forest)
        valuation.fit(train)
    seconds = time.perf_counter() - t0
    result = valuation.result
    values = np.full(len(train), np.nan)
    values[np.asarray(result.indices, dtype=np.int64)] = result.values
    np.save(out_path, values)
    print(json.dumps({"seconds": seconds, "versions": {"pydvl": pydvl.__version__, "sklearn": sklearn.__version__},
                      "counts_max": int(np.max(result.counts)) if hasattr(result, "counts") else None}))


if __name__ == "__main__":
    main()
