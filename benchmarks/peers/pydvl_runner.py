"""Time pyDVL's KNN-Shapley on a benchmark .npz; run with the pyDVL env's python.

Usage: python pydvl_runner.py DATA.npz K VALUES.npy [N_JOBS]

Prints one JSON line on stdout (last line): seconds (the ``fit`` call only), peak RSS of
this process, versions. Values, in training-index order, are saved to VALUES.npy.
"""

import json
import resource
import sys
import time

import numpy as np


def main():
    data_path, k, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    n_jobs = int(sys.argv[4]) if len(sys.argv) > 4 else 1

    import pydvl
    import sklearn
    from joblib import parallel_config
    from sklearn.neighbors import KNeighborsClassifier

    from pydvl.valuation.dataset import Dataset
    from pydvl.valuation.methods.knn_shapley import KNNShapleyValuation

    with np.load(data_path) as z:
        x_train, y_train, x_val, y_val = (z[n] for n in ("x_train", "y_train", "x_val", "y_val"))
    train, test = Dataset(x_train, y_train), Dataset(x_val, y_val)
    valuation = KNNShapleyValuation(KNeighborsClassifier(n_neighbors=k), test, progress=False)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    t0 = time.perf_counter()
    with parallel_config(n_jobs=n_jobs):
        valuation.fit(train)
    seconds = time.perf_counter() - t0

    result = valuation.result
    values = np.full(len(train), np.nan)
    values[np.asarray(result.indices, dtype=np.int64)] = result.values
    np.save(out_path, values)
    print(json.dumps({
        "seconds": seconds,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_before_kib": rss_before,
        "versions": {"pydvl": pydvl.__version__, "sklearn": sklearn.__version__,
                     "numpy": np.__version__},
        "n_jobs": n_jobs,
    }))


if __name__ == "__main__":
    main()
