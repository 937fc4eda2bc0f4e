"""PUMA patching of the logistic-regression head (ads.patch, ads patch) on real optdigits.

Oracles: finite differences of refits with sample weights (phi), exact leave-one-out refits
(predicted change of C), the identity (empty removal), and the unpatched model (re-adding).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ads import influence as inf
from ads.errors import DataError, ParameterError, StoreError
from ads.patch import METRICS, HeadModel, load_model, metric_value, patch_model, puma, reweight, rows_of, save_model
from tests.test_cli import run


@pytest.fixture(scope="module")
def small():
    """Digits 0-3, 8 x 8 pixels / 16: 240 training and 120 validation points, a head of 65 x 3."""
    d = load_digits()
    m = d.target < 4
    X, y = d.data[m] / 16.0, d.target[m]
    perm = np.random.default_rng(0).permutation(len(y))
    tr, va = perm[:240], perm[240:360]
    head = inf.LogisticHead(lam=1.0, tol=1e-13).fit(X[tr], y[tr], 4)
    return head, X[tr], y[tr], X[va], y[va]


def test_phi_is_the_finite_difference_of_upweighting(small):
    head, X, y, _, _ = small
    eps = 1e-4
    for i in (0, 17, 101):
        w = np.ones(len(y))
        thetas = []
        for s in (+1, -1):
            w[i] = 1 + s * eps
            thetas.append(inf.LogisticHead(lam=1.0, tol=1e-13).fit(X, y, 4, sample_weight=w, theta0=head.theta_).theta_)
        fd = (thetas[0] - thetas[1]).reshape(-1) / (2 * eps)  # d theta / d eps = -H^{-1} grad l_i = -phi_i
        phi = inf.phi(head, X, y, [i])[0]
        assert np.linalg.norm(fd + phi) <= 1e-5 * np.linalg.norm(phi), i


@pytest.mark.parametrize("metric", METRICS)
def test_predicted_change_matches_measured_and_retraining_for_one_point(small, metric):
    head, X, y, _, _ = small
    rows = [3, 50, 200]
    exact = inf.loo_params(head, X, y, rows)
    for r, theta_loo in zip(rows, exact):
        res = puma(head, X, y, [r], metric=metric, compensate=False, line_search=False)
        keep = np.arange(len(y)) != r
        retrained = metric_value(theta_loo, X[keep], y[keep], metric) - res.metric_before
        scale = max(abs(retrained), 1e-6)
        assert abs(res.predicted_change - res.measured_change) <= 0.05 * scale + 1e-9, (metric, r)
        assert abs(res.predicted_change - retrained) <= 0.1 * scale + 1e-8, (metric, r)
        assert res.eta == 1.0 and res.n_compensating == 0


def test_compensation_keeps_every_class_and_delta_is_respected(small):
    head, X, y, _, _ = small
    rows = np.flatnonzero(y == 2)[:15]  # a chunk of one class
    plain = puma(head, X, y, rows, metric="accuracy", compensate=False, line_search=False)
    res = puma(head, X, y, rows, metric="accuracy", delta=1e-3)
    # lambda* makes sum_j lambda_j psi_j match sum_k psi_k: the per-class predicted change shrinks
    assert np.linalg.norm(res.predicted_group_change) < 0.2 * np.linalg.norm(plain.predicted_group_change)
    assert res.n_compensating > 0 and (res.lambdas >= 0).all() and (res.lambdas[rows] == 0).all()
    assert abs(res.measured_change) <= 1e-3
    assert res.measured_change == pytest.approx(metric_value(res.theta, np.delete(X, rows, 0), np.delete(y, rows), "accuracy")
                                                - res.metric_before, abs=1e-12)
    # PUMA's update, term by term: theta_mod = theta + eta [sum_k phi_k - sum_j lambda_j phi_j]
    up = np.flatnonzero(res.lambdas)
    expected = res.eta * inf.phi(head, X, y, rows).sum(axis=0) - res.lambdas[up] @ inf.phi(head, X, y, up)
    assert np.allclose(res.theta - head.theta_, expected.reshape(head.theta_.shape), atol=1e-10)
    tight = puma(head, X, y, rows, metric="accuracy", delta=1e-7)
    assert abs(tight.measured_change) <= 1e-7 and tight.eta < 1.0
    assert np.allclose(tight.weights[rows], 1 - tight.eta)


def test_remove_then_readd_restores_theta(small):
    head, X, y, _, _ = small
    for r in (50, 77):  # points of ordinary leverage: removal is first-order accurate
        res = puma(head, X, y, [r], compensate=False, line_search=False)
        assert res.weights[r] == 0.0
        back = reweight(res.head, X, y, res.weights, np.ones(len(y)))
        moved = np.linalg.norm(res.theta - head.theta_)
        assert moved > 1e-3
        assert np.linalg.norm(back - head.theta_) <= 0.1 * moved, r
    # the round trip's error is second order in the weight change: halving it quarters the error
    r, errs = 5, []
    for t in (0.1, 0.05):
        w = np.ones(len(y))
        w[r] = 1 - t
        down = reweight(head, X, y, np.ones(len(y)), w)
        moved_head = inf.LogisticHead(lam=1.0)
        moved_head.n_classes_, moved_head.n_params_, moved_head.theta_ = 4, head.n_params_, down
        errs.append(np.linalg.norm(reweight(moved_head, X, y, w, np.ones(len(y))) - head.theta_))
    assert 3.0 < errs[0] / errs[1] < 5.0, errs


def test_empty_removal_with_zero_delta_is_the_identity(small):
    head, X, y, _, _ = small
    for metric in METRICS:
        res = puma(head, X, y, np.array([], dtype=np.int64), metric=metric, delta=0.0)
        assert np.array_equal(res.theta, head.theta_)
        assert np.array_equal(res.weights, np.ones(len(y)))
        assert res.predicted_change == 0.0 and res.measured_change == 0.0 and res.eta == 1.0


def test_bad_arguments(small):
    head, X, y, _, _ = small
    with pytest.raises(ParameterError, match="'metric'"):
        puma(head, X, y, [0], metric="f1")
    with pytest.raises(ParameterError, match="'delta'"):
        puma(head, X, y, [0], delta=-1)
    with pytest.raises(DataError, match="'remove' rows"):
        puma(head, X, y, [len(y)])


def test_model_directory_round_trip_and_patch_model(tmp_path, small):
    _, X, y, Xv, yv = small
    model = HeadModel.fit(X, y, [f"p{i}" for i in range(len(y))], Xv, yv, ["0", "1", "2", "3"], meta={"arch": "pixels"})
    save_model(tmp_path / "m", model)
    back = load_model(tmp_path / "m")
    for name in ("theta", "X", "y", "ids", "weights", "X_val", "y_val"):
        assert np.array_equal(getattr(back, name), getattr(model, name)), name
    assert back.classes == model.classes and back.lam == model.lam and back.meta == {"arch": "pixels"}
    patched, report, details = patch_model(back, rows_of(back, ["p1", "p2"]), delta=0.01)
    assert details["n_removed"] == 2 and patched.weights[[1, 2]].tolist() == [0.0, 0.0]
    with pytest.raises(ParameterError, match="not in the model"):
        rows_of(back, ["p1", "nope"])
    with pytest.raises(StoreError, match="head.json"):
        load_model(tmp_path)


@pytest.fixture()
def model_dir(tmp_path, feature_stores):
    d = tmp_path / "model"
    r = run(["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--val", feature_stores["val"],
             "--budget", 5, "--save-model", d, "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    return d


def test_cli_patch_end_to_end(tmp_path, model_dir):
    model = load_model(model_dir)
    assert model.X.shape == (200, 64) and len(model.ids) == 200
    ids = tmp_path / "ids.csv"
    ids.write_text("id\n" + "\n".join(model.ids[:3]) + "\n")
    r = run(["patch", "--model", model_dir, "--remove", ids, "--out", tmp_path / "p", "--json"], tmp_path)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert set(rep) == {"predicted_change", "measured_change", "removed_accuracy_before", "removed_accuracy_after",
                        "val_accuracy_before", "val_accuracy_after", "seconds"}
    assert abs(rep["measured_change"]) <= 0.01
    patched = load_model(tmp_path / "p")
    assert (patched.weights[:3] == 0).all() and not np.array_equal(patched.theta, model.theta)
    r = run(["patch", "--model", tmp_path / "p", "--remove-lowest", "5%", "--out", tmp_path / "p2", "--json"], tmp_path)
    assert r.exit_code == 0, r.output
    assert (load_model(tmp_path / "p2").weights == 0).sum() == 3 + 10  # ceil(5% of the 197 left)


@pytest.mark.parametrize("args, message", [
    (["--remove", "MISSING"], "No such file"),
    (["--remove", "UNKNOWN"], "not in the model"),
    (["--remove-lowest", "0%"], "percentage in (0, 100)"),
    (["--remove-lowest", "150"], "percentage in (0, 100)"),
    (["--remove-lowest", "x%"], "percentage in (0, 100)"),
    ([], "exactly one of --remove or --remove-lowest"),
    (["--remove-lowest", "5", "--delta", "-1"], "'delta'"),
])
def test_cli_patch_bad_input_is_one_line_exit_2(tmp_path, model_dir, args, message):
    (tmp_path / "UNKNOWN").write_text("id\nnot-an-id\n")
    args = [str(tmp_path / a) if a in ("MISSING", "UNKNOWN") else a for a in args]
    r = run(["patch", "--model", model_dir, *args, "--out", tmp_path / "p"], tmp_path)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ads: error: ") and "ads patch" in lines[0] and message in lines[0], r.output
    assert not (tmp_path / "p").exists()


def test_steps_approach_retraining_for_a_large_removal(small):
    head, X, y, _, _ = small
    rows = np.flatnonzero(y == 1)[:20]
    keep = np.setdiff1d(np.arange(len(y)), rows)
    exact = inf.LogisticHead(lam=1.0, tol=1e-13).fit(X[keep], y[keep], 4).theta_
    errs = [np.linalg.norm(puma(head, X, y, rows, compensate=False, line_search=False, steps=s).theta - exact) for s in (1, 8)]
    assert errs[1] < 0.5 * errs[0], errs


# ----------------------------------------------------------------- the loop's patch
def test_loop_patch_lowest_and_patch_a_loop_run(tmp_path, digits):
    """--patch-lowest: every round's record lists the removed labels, the patch keeps
    accuracy within delta, and the round is evaluated with the patched head (the test
    accuracy recomputed from RUN/model, which is the patched head, matches the record).
    Then `ads patch --model RUN` patches the run's latest model."""
    from ads import loop as L
    from ads.pool import open_pool, write_pool

    _, feats, y = digits
    perm = np.random.default_rng(1).permutation(len(y))
    classes = [str(c) for c in range(10)]
    parts = {"labeled": perm[:120], "val": perm[120:270], "test": perm[270:470], "pool": perm[470:1070]}
    st = {}
    for name, idx in parts.items():
        kw = dict(ids=[f"d{i}" for i in idx], classes=classes)
        if name == "pool":
            st[name] = str(write_pool(tmp_path / "pool.zarr", feats[idx], y=np.full(idx.size, -1), hidden={"y": y[idx]}, **kw))
        else:
            st[name] = str(write_pool(tmp_path / f"{name}.zarr", feats[idx], y=y[idx], **kw))
    wd = tmp_path / "run"
    args = ["loop", "--pool", st["pool"], "--labeled", st["labeled"], "--val", st["val"], "--test", st["test"],
            "--rounds", 2, "--budget", 10, "--fraction", 0.5, "--workdir", wd, "--patch-lowest", "10%", "-q"]
    r = run(args, tmp_path)
    assert r.exit_code == 0, r.output
    recs = L.read_rounds(wd)
    assert [rec["n_labeled"] for rec in recs] == [120, 130, 140]
    for rec in recs:
        p = rec["patch"]
        assert p["n_removed"] == len(p["removed"]) == int(np.ceil(0.1 * rec["n_labeled"]))
        assert abs(p["measured_change"]) <= 0.01 + 1e-12
        assert {"network_test_accuracy", "head_test_accuracy_before", "val_accuracy_after"} <= set(p)
        assert rec["val_accuracy"] == p["val_accuracy_after"]
    # RUN/model is the final round's patched head: its weights zero the removed labels, and
    # its test accuracy is the final record's
    model = load_model(wd / "model")
    last = recs[-1]["patch"]
    assert sorted(model.ids[model.weights == 0]) == sorted(last["removed"])
    test = open_pool(st["test"])
    emb = test.take(np.arange(test.n)).astype(np.float32)  # a features store: the embedder is the identity
    acc = float((inf._proba(inf._augment(emb), model.theta).argmax(1) == test.y()).mean())
    assert acc == pytest.approx(recs[-1]["test_accuracy"], abs=1e-12)
    # ads patch on the run directory patches RUN/model
    r = run(["patch", "--model", wd, "--remove-lowest", "5%", "--out", tmp_path / "p2", "--json"], tmp_path)
    assert r.exit_code == 0, r.output
    assert (load_model(tmp_path / "p2").weights == 0).sum() == len(last["removed"]) + int(np.ceil(0.05 * (140 - 14)))
    # the configuration is kept: an old state without the field resumes as off
    state = json.loads((wd / "state.json").read_text())
    assert state["config"]["patch_lowest"] == 10.0
    del state["config"]["patch_lowest"]
    assert L.LoopConfig.from_state(state["config"]).patch_lowest is None


@pytest.mark.parametrize("value, message", [("0%", "percentage in (0, 100)"), ("100", "percentage in (0, 100)"),
                                            ("ten", "percentage in (0, 100)")])
def test_loop_bad_patch_lowest_is_one_line_exit_2(tmp_path, feature_stores, value, message):
    r = run(["loop", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--val", feature_stores["val"],
             "--rounds", 1, "--budget", 5, "--workdir", tmp_path / "run", "--patch-lowest", value], tmp_path)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "'patch-lowest'" in lines[0] and "ads loop" in lines[0] and message in lines[0], r.output
    assert not (tmp_path / "run" / "state.json").exists()


def test_patch_a_run_without_a_model_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text("{}")
    r = run(["patch", "--model", tmp_path / "run", "--remove-lowest", "5%", "--out", tmp_path / "p"], tmp_path)
    assert r.exit_code == 2 and "has no model yet" in r.output and len(r.output.strip().splitlines()) == 1, r.output
