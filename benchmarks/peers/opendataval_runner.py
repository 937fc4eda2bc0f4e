"""Time OpenDataVal's KNNShapley on a benchmark .npz; run with the OpenDataVal env's python.

Usage: python opendataval_runner.py DATA.npz K VALUES.npy

Prints one JSON line on stdout (last line): seconds (the ``train_data_values`` call
only), peak RSS of this process, versions. Values, in training-index order, are saved
to VALUES.npy.

OpenDataVal compares labels as rows (``(y == y_valid).all(dim=1)``), as its DataFetcher
one-hot encodes them; the labels are one-hot encoded here the same way. No embedding
model is given, so it works on the raw features, like the others.
"""

import json
import resource
import sys
import time

import numpy as np


def main():
    data_path, k, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    import opendataval
    import torch
    from opendataval.dataval import KNNShapley

    with np.load(data_path) as z:
        x_train, y_train, x_val, y_val = (z[n] for n in ("x_train", "y_train", "x_val", "y_val"))
    n_classes = int(max(y_train.max(), y_val.max())) + 1
    eye = torch.eye(n_classes)
    evaluator = KNNShapley(k_neighbors=k).input_data(
        torch.from_numpy(x_train), eye[torch.from_numpy(y_train)],
        torch.from_numpy(x_val), eye[torch.from_numpy(y_val)],
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    t0 = time.perf_counter()
    evaluator.train_data_values()
    seconds = time.perf_counter() - t0

    np.save(out_path, np.asarray(evaluator.evaluate_data_values(), dtype=np.float64))
    print(json.dumps({
        "seconds": seconds,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_before_kib": rss_before,
        "versions": {"opendataval": opendataval.__version__, "torch": torch.__version__,
                     "numpy": np.__version__},
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
