"""Time scikit-activeml's CoreSet or Badge on a benchmark data folder; run with its env's python.

Usage: python skactiveml_runner.py DATA_DIR {coreset,badge} BATCH PICKS.npy [SEED]

DATA_DIR holds the .npy files written by benchmarks/efficiency.py: ``xl`` (labeled
embeddings), ``yl`` (their labels), ``pool`` (pool embeddings, float32) and ``proba``
(pool class probabilities). The query sees ``X = [labeled; pool]`` with ``y`` =
MISSING_LABEL (NaN) for the pool rows, so its candidates are the pool, as in its docs.

Badge gets the benchmark's probabilities through a classifier whose ``predict_proba``
returns them (``fit_clf=False``): both sides then see identical inputs, and
``clf_embedding_flag_name=None`` makes Badge use the pool embeddings as the pre-logit
features, as ours does.

Prints one JSON line on stdout (last line): seconds (the ``query`` call only), peak RSS
of this process after the query
(VmHWM, reset just before it) and the RSS just before it, versions. The picks, as pool
indices in pick order, are saved to PICKS.npy.
"""

import json
import sys
import time

import numpy as np


def status_kib(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def memory_baseline():
    """Reset the peak-RSS mark (``5`` > /proc/self/clear_refs) so that the peak after
    it belongs to the query, not to imports or loading; return the RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return status_kib("VmRSS")


def main():
    data_dir, method, batch, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0

    import sklearn
    import skactiveml
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import Badge, CoreSet
    from skactiveml.utils import MISSING_LABEL

    class FixedProba(SkactivemlClassifier):
        """A fitted classifier whose probabilities for the pool are given."""

        def __init__(self, proba=None, classes=None, missing_label=MISSING_LABEL):
            super().__init__(classes=classes, missing_label=missing_label)
            self.proba = proba

        def fit(self, X, y, sample_weight=None):  # pragma: no cover - fit_clf=False
            return self

        def predict_proba(self, X, **kwargs):
            if X.shape[0] != self.proba.shape[0]:
                raise ValueError(f"FixedProba holds {self.proba.shape[0]} rows; asked for {X.shape[0]}.")
            return self.proba

    load = lambda name: np.load(f"{data_dir}/{name}.npy")  # noqa: E731
    xl, yl, pool = load("xl"), load("yl"), load("pool")
    n_lab = xl.shape[0]
    X = np.concatenate([xl, pool])
    y = np.concatenate([yl.astype(np.float64), np.full(pool.shape[0], MISSING_LABEL)])
    del pool
    if method == "coreset":
        qs = CoreSet(random_state=seed)
        call = lambda: qs.query(X, y, batch_size=batch)  # noqa: E731
    elif method == "badge":
        proba = load("proba")
        clf = FixedProba(proba=proba, classes=np.arange(proba.shape[1]))
        qs = Badge(random_state=seed)
        call = lambda: qs.query(X, y, clf, fit_clf=False, batch_size=batch)  # noqa: E731
    else:
        raise SystemExit(f"unknown method {method!r}; expected coreset or badge")
    rss_before = memory_baseline()

    t0 = time.perf_counter()
    picks = call()
    seconds = time.perf_counter() - t0

    np.save(out_path, np.asarray(picks, dtype=np.int64) - n_lab)
    print(json.dumps({
        "seconds": seconds,
        "peak_rss_kib": status_kib("VmHWM"),
        "rss_before_kib": rss_before,
        "versions": {"scikit-activeml": skactiveml.__version__, "sklearn": sklearn.__version__,
                     "numpy": np.__version__},
    }))


if __name__ == "__main__":
    main()
