"""Run one OpenDataVal 1.3 data evaluator on a benchmark .npz; run with its env's python.

Usage: python opendataval_valuers_runner.py DATA.npz METHOD VALUES.npy BUDGET

METHOD: loo | tmc-shapley | beta-shapley | data-oob | knn-shapley. The model of loo,
tmc-shapley (DataShapley), beta-shapley (BetaShapley, alpha 16, beta 1) and data-oob
(DataOob: bagged logistic regressions, OpenDataVal's way) is scikit-learn's LogisticRegression through ClassifierSkLearnWrapper, the
metric accuracy. BUDGET: permutations (TMCSampler mc_epochs) of the Shapley methods,
models of data-oob, K of knn-shapley. Labels are one-hot, as OpenDataVal's DataFetcher
gives them. Prints one JSON line: seconds of train_data_values, versions.
"""

import json
import sys
import time

import numpy as np


def main():
    data_path, method, out_path, budget = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    import opendataval
    import torch
    from opendataval.dataval import BetaShapley, DataOob, DataShapley, KNNShapley, LeaveOneOut, TMCSampler
    from opendataval.metrics import Metrics
    from opendataval.model import ClassifierSkLearnWrapper
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(1)
    with np.load(data_path) as z:
        x_train, y_train, x_val, y_val = (z[n] for n in ("x_train", "y_train", "x_val", "y_val"))
    x_train, x_val = x_train.astype(np.float32), x_val.astype(np.float32)  # its KNNShapley fills float32 tensors
    C = int(max(y_train.max(), y_val.max())) + 1
    eye = torch.eye(C)
    data = (torch.from_numpy(x_train), eye[torch.from_numpy(y_train)], torch.from_numpy(x_val), eye[torch.from_numpy(y_val)])
    if method == "loo":
        ev = LeaveOneOut(random_state=0)
    elif method == "tmc-shapley":
        ev = DataShapley(sampler=TMCSampler(mc_epochs=budget, min_cardinality=5, random_state=0))
    elif method == "beta-shapley":
        ev = BetaShapley(sampler=TMCSampler(mc_epochs=budget, min_cardinality=5, random_state=0), alpha=16, beta=1)
    elif method == "data-oob":
        ev = DataOob(num_models=budget, random_state=0)
    elif method == "knn-shapley":
        ev = KNNShapley(k_neighbors=budget)
    else:
        raise SystemExit(f"unknown method {method}")
    if method != "knn-shapley":
        ev = ev.input_model(ClassifierSkLearnWrapper(LogisticRegression, C, max_iter=1000)).input_metric(Metrics.ACCURACY)
    ev = ev.input_data(*data)
    t0 = time.perf_counter()
    ev.train_data_values()
    seconds = time.perf_counter() - t0
    np.save(out_path, np.asarray(ev.evaluate_data_values(), dtype=np.float64))
    print(json.dumps({"seconds": seconds, "versions": {"opendataval": opendataval.__version__, "torch": torch.__version__}}))


if __name__ == "__main__":
    main()
