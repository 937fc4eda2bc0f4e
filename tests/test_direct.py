"""Issue 10: the direct scorer against append-and-recompute, the pre-selection shapes
against naive versions, rejected labels through the loop, and `ads score`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ads.score import DirectScorer, aggregate_classes, make_scorer
from ads.select import Preselect, preselect_balanced, quotas
from ads.shapley import DirectValueTables, knn_shapley


def append_and_recompute(x, y, xv, yv, X, k, n_classes):
    """The oracle: knn_shapley on the labeled set plus (X[i], c) as its last point."""
    out = np.empty((len(X), n_classes))
    for i in range(len(X)):
        for c in range(n_classes):
            out[i, c] = knn_shapley(np.vstack([x, X[i]]), np.append(y, c), xv, yv, k=k)[-1]
    return out


@st.composite
def direct_cases(draw):
    d = draw(st.integers(1, 3))
    hi = draw(st.integers(2, 4))
    n = draw(st.integers(1, 9))
    rows = st.lists(st.integers(0, hi - 1), min_size=d, max_size=d)
    x = draw(st.lists(rows, min_size=n, max_size=n))
    classes = draw(st.integers(1, 3))
    y = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    xv = draw(st.lists(rows, min_size=1, max_size=4))
    yv = draw(st.lists(st.integers(0, classes - 1), min_size=len(xv), max_size=len(xv)))
    # new points: some duplicate labeled rows (exact ties), some anywhere on the grid
    X = draw(st.lists(st.one_of(st.sampled_from(x), rows), min_size=1, max_size=4))
    k = draw(st.integers(1, n + 3))  # K > N + 1 included
    return np.array(x, float), np.array(y), np.array(xv, float), np.array(yv), np.array(X, float), k, classes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=direct_cases())
def test_direct_values_equal_append_and_recompute(case):
    x, y, xv, yv, X, k, C = case
    got = DirectValueTables(x, y, xv, yv, k=k, n_classes=C).class_values(X)
    np.testing.assert_allclose(got, append_and_recompute(x, y, xv, yv, X, k, C), atol=1e-12, rtol=0)


def test_direct_values_edge_cases():
    # one class; x farther than every labeled point (last rank); K > N + 1; a duplicate
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.zeros(3, dtype=int)
    xv, yv = np.array([[0.0], [0.5]]), np.array([0, 0])
    X = np.array([[10.0], [1.0], [0.0]])
    for k in (1, 2, 3, 4, 7):
        got = DirectValueTables(x, y, xv, yv, k=k, n_classes=1).class_values(X)
        np.testing.assert_allclose(got, append_and_recompute(x, y, xv, yv, X, k, 1), atol=1e-12, rtol=0)


def test_direct_values_on_real_embeddings_blocks(digits):
    _, feats, yall = digits
    x, y, xv, yv, X = feats[:60], yall[:60], feats[60:80], yall[60:80], feats[80:95]
    t = DirectValueTables(x, y, xv, yv, k=5, n_classes=10)
    got = t.class_values(X, block_rows=4)
    np.testing.assert_array_equal(got, t.class_values(X))
    np.testing.assert_allclose(got, append_and_recompute(x, y, xv, yv, X, 5, 10), atol=1e-12, rtol=0)


def test_self_excluded_calibration_values_equal_recomputation():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, (8, 2)).astype(float)
    y = rng.integers(0, 2, 8)
    xv = rng.integers(0, 3, (5, 2)).astype(float)
    yv = rng.integers(0, 2, 5)
    got = DirectValueTables(x, y, xv, yv, k=3, n_classes=2).self_excluded_class_values()
    for j in range(5):
        others = np.arange(5) != j
        want = append_and_recompute(x, y, xv[others], yv[others], xv[j:j + 1], 3, 2)[0]
        np.testing.assert_allclose(got[j], want, atol=1e-12, rtol=0)


def test_direct_scorer_aggregations(digits):
    _, feats, yall = digits
    x, y, xv, yv, X = feats[:100], yall[:100], feats[100:150], yall[100:150], feats[150:170]
    proba = np.random.default_rng(0).dirichlet(np.ones(10), size=20)
    cv = DirectValueTables(x, y, xv, yv, k=10, n_classes=10).class_values(X)
    for agg, want in (("expected", (cv * proba).sum(1)), ("max", cv.max(1)), ("mean", cv.mean(1))):
        s = make_scorer("direct", aggregate=agg).fit(x, y, xv, yv, n_classes=10)
        np.testing.assert_allclose(s.score(X, proba), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(aggregate_classes(cv, proba, "expected"), (cv * proba).sum(1))
    from ads.errors import ParameterError

    with pytest.raises(ParameterError, match=r"'aggregate' parameter of the direct scorer must be one of"):
        DirectScorer(aggregate="weighted").fit(x, y, xv, yv, n_classes=10)


# ---------------------------------------------------------------- pre-selection shapes


def naive_balanced(scores, pred, shares, keep, exclude):
    avail = [i for i in range(len(scores)) if not exclude[i]]
    keep = min(keep, len(avail))
    exact = np.asarray(shares) / np.sum(shares) * keep
    q = np.floor(exact).astype(int)
    for c in sorted(range(len(q)), key=lambda c: (-(exact[c] - q[c]), c))[: keep - q.sum()]:
        q[c] += 1
    chosen = []
    for c in range(len(q)):
        rows = sorted((i for i in avail if pred[i] == c), key=lambda i: (-scores[i], i))
        chosen += rows[: q[c]]
    rest = sorted((i for i in avail if i not in chosen), key=lambda i: (-scores[i], i))
    chosen += rest[: keep - len(chosen)]
    return sorted(chosen)


def test_balanced_equals_naive_with_ties_and_short_classes():
    rng = np.random.default_rng(1)
    for _ in range(60):
        n = int(rng.integers(5, 60))
        C = int(rng.integers(1, 5))
        scores = rng.integers(0, 4, n).astype(float)
        pred = rng.integers(0, C, n)
        shares = rng.random(C) + 0.01
        exclude = rng.random(n) < 0.2
        keep = int(rng.integers(1, n + 3))
        got = preselect_balanced(scores, pred, shares, keep, exclude)
        assert list(got) == naive_balanced(scores, pred, shares, keep, exclude)


def test_quotas_largest_remainders():
    np.testing.assert_array_equal(quotas([0.5, 0.3, 0.2], 7), [4, 2, 1])  # 3.5 2.1 1.4 -> the 0.5 remainder wins
    assert quotas(np.ones(10), 95).sum() == 95


def test_threshold_drops_below_the_percentile_and_caps():
    scores = np.arange(100, dtype=float)
    proba = np.eye(2)[np.arange(100) % 2]
    calibration = np.linspace(10, 90, 81)  # 5th percentile = 14
    pre = Preselect(shape="threshold", percentile=5, max_candidates=40).validate()
    cand, info = pre.apply(scores, budget=5, proba=proba, class_shares=[0.5, 0.5], calibration=calibration)
    assert info["threshold"] == 14.0 and info["dropped"] == 14
    assert len(cand) == 40 and cand.min() >= 14 and list(cand) == list(range(60, 100))  # the top 20 of each class
    pre = Preselect(shape="threshold", percentile=5).validate()
    cand, _ = pre.apply(scores, budget=5, proba=proba, class_shares=[0.5, 0.5], calibration=calibration)
    assert len(cand) == 50  # default cap: 10 x budget
    exclude = np.zeros(100, dtype=bool)
    exclude[90:] = True
    cand, info = Preselect(shape="threshold", percentile=99, max_candidates=500).validate().apply(
        scores, budget=20, proba=proba, class_shares=[0.5, 0.5], calibration=calibration, exclude=exclude)
    assert info.get("topped_up") and list(cand) == list(range(70, 90))  # too few above: the best 20 available


def test_bad_preselect_parameters():
    from ads.errors import ParameterError

    with pytest.raises(ParameterError, match=r"'preselect' parameter of ads select must be one of"):
        Preselect(shape="bottom").validate()
    with pytest.raises(ParameterError, match=r"'percentile' parameter of ads loop must be a number in \[0, 100\)"):
        Preselect(percentile=100).validate("ads loop")


# ---------------------------------------------------------------- through the CLI


def _run(args, tmp_path):
    from click.testing import CliRunner

    import cli

    return CliRunner().invoke(cli.ads, [str(a) for a in args], env={"ADS_CACHE": str(tmp_path / "cache")},
                              catch_exceptions=False)


@pytest.mark.parametrize("shape", ["top", "balanced", "threshold"])
def test_select_with_each_shape(tmp_path, feature_stores, shape):
    r = _run(["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--val",
              feature_stores["val"], "--budget", 12, "--scorer", "direct", "--preselect", shape, "--json", "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["picked"]) == 12 and out["preselect"]["shape"] == shape and out["scorer"] == "direct"
    if shape == "threshold":
        assert out["n_candidates"] == min(120, 600 - out["preselect"]["dropped"])


def test_score_command_per_class_equals_the_library(tmp_path, feature_stores):
    from ads.pool import open_pool

    out = tmp_path / "s.csv"
    r = _run(["score", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--val",
              feature_stores["val"], "--scorer", "direct", "--per-class", "--out", out, "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["id", "score"] + [f"value_{c}" for c in range(10)] and len(rows) == 600
    lab, val, pool = (open_pool(feature_stores[k]) for k in ("labeled", "val", "pool"))
    cv = DirectValueTables(lab.read_x(), lab.y(), val.read_x(), val.y(), k=10, n_classes=10).class_values(pool.read_x())
    got = np.array([[float(row[f"value_{c}"]) for c in range(10)] for row in rows])
    np.testing.assert_allclose(got, cv, rtol=1e-9, atol=1e-12)
    assert [row["id"] for row in rows] == list(pool.ids())


def test_rejected_items_are_paid_never_trained_never_offered(tmp_path, digits):
    from ads import loop as L
    from ads.pool import open_pool, write_pool
    from cli import resume_run

    _, feats, y = digits
    kw = {"classes": [str(c) for c in range(10)]}
    hidden = y[400:900].copy()
    hidden[::4] = -1  # a quarter of the pool belongs to no class: the oracle rejects it
    write_pool(tmp_path / "lab.zarr", feats[:200], y=y[:200], **kw)
    write_pool(tmp_path / "val.zarr", feats[200:300], y=y[200:300], **kw)
    write_pool(tmp_path / "pool.zarr", feats[400:900], y=np.full(500, -1), hidden={"y": hidden}, **kw)
    cfg = L.LoopConfig(pool=str(tmp_path / "pool.zarr"), labeled=str(tmp_path / "lab.zarr"), val=str(tmp_path / "val.zarr"),
                       test=None, rounds=3, budget=40, strategy="coreset", fraction=1.0, seed=0)
    run = L.start(cfg, tmp_path / "run")
    state = resume_run(run.dir, progress=False)
    recs = L.read_rounds(run.dir)
    rejected = [pid for pid, lab, _ in state["added"] if lab < 0]
    assert rejected and [r["n_bought"] for r in recs] == [0, 40, 80, 120]
    assert recs[-1]["n_rejected"] == len(rejected) == sum(r.get("rejected", 0) for r in recs)
    assert recs[-1]["n_labeled"] == 200 + 120 - len(rejected)  # never trained on
    picked = [p for r in recs for p in r["picked"]]
    assert len(picked) == len(set(picked)) == 120  # never offered again
    ids = open_pool(tmp_path / "pool.zarr").ids().tolist()
    assert all(hidden[ids.index(p)] == -1 for p in rejected)
    assert "rejected" in L.report([run.dir]).splitlines()[0]


def test_label_import_accepts_reject(tmp_path, digits):
    from ads import loop as L
    from ads.pool import write_pool
    from cli import resume_run

    _, feats, y = digits
    kw = {"classes": [str(c) for c in range(10)]}
    write_pool(tmp_path / "lab.zarr", feats[:200], y=y[:200], **kw)
    write_pool(tmp_path / "val.zarr", feats[200:300], y=y[200:300], **kw)
    write_pool(tmp_path / "pool.zarr", feats[400:600], **kw)
    cfg = L.LoopConfig(pool=str(tmp_path / "pool.zarr"), labeled=str(tmp_path / "lab.zarr"), val=str(tmp_path / "val.zarr"),
                       test=None, rounds=2, budget=5, oracle="external")
    run = L.start(cfg, tmp_path / "run")
    resume_run(run.dir, progress=False)
    batch = L.Run(run.dir).load()["batch"]
    labels = tmp_path / "l.csv"
    labels.write_text("id,label\n" + "".join(f"{b},{lab}\n" for b, lab in zip(batch, ["reject", "", "3", "REJECT", "7"])))
    state = L.import_labels(run.dir, labels)
    assert [a[1] for a in state["added"]] == [-1, -1, 3, -1, 7]


@pytest.mark.network
def test_cheap_pool_rejecting_oracle_and_annotator_noise(tmp_path):
    from ads.datasets.cheap import coarse_source, make_cheap_mnist
    from ads.pool import open_pool

    kw = dict(labeled=100, val=50, test=50, pool=2000, seed=1,
              fractions={"clean": 0.5, "corrupted": 0.15, "shifted": 0.2, "off-task": 0.15}, label_noise=0.0)
    base = open_pool(make_cheap_mnist(tmp_path / "a", **kw)["pool"])
    rej = open_pool(make_cheap_mnist(tmp_path / "b", off_task_labels="reject", annotator_noise=0.2, **kw)["pool"])
    np.testing.assert_array_equal(base.read_x(), rej.read_x())  # same images and sources
    off = np.array([coarse_source(t) == "off-task" for t in rej.hidden("source")])
    assert (rej.hidden("y")[off] == -1).all() and (rej.hidden("y")[~off] >= 0).all()
    flipped = (rej.hidden("y") != base.hidden("y"))[~off]
    assert 0.15 < flipped.mean() < 0.25  # about the annotator-noise rate, whatever the source


def test_near_rejected_mask_equals_numpy_1nn():
    from ads.select import near_rejected_mask

    rng = np.random.default_rng(3)
    pool = rng.integers(0, 6, (200, 2)).astype(np.float32)
    acc = rng.integers(0, 6, (15, 2)).astype(np.float32)
    rej = rng.integers(0, 6, (6, 2)).astype(np.float32)
    d_acc = ((pool[:, None] - acc[None]) ** 2).sum(-1).min(1)
    d_rej = ((pool[:, None] - rej[None]) ** 2).sum(-1).min(1)
    np.testing.assert_array_equal(near_rejected_mask(pool, acc, rej), d_rej < d_acc)  # ties -> accepted


def test_loop_drops_points_near_rejected_items(tmp_path, digits):
    from ads import loop as L
    from ads.pool import open_pool, write_pool
    from ads.select import near_rejected_mask
    from cli import resume_run

    _, feats, y = digits
    kw = {"classes": [str(c) for c in range(10)]}
    hidden = y[400:900].copy()
    hidden[hidden == 9] = -1  # this annotator rejects every 9 of the pool
    write_pool(tmp_path / "lab.zarr", feats[:200], y=y[:200], **kw)
    write_pool(tmp_path / "val.zarr", feats[200:300], y=y[200:300], **kw)
    write_pool(tmp_path / "pool.zarr", feats[400:900], y=np.full(500, -1), hidden={"y": hidden}, **kw)
    cfg = L.LoopConfig(pool=str(tmp_path / "pool.zarr"), labeled=str(tmp_path / "lab.zarr"), val=str(tmp_path / "val.zarr"),
                       test=None, rounds=2, budget=30, strategy="coreset", fraction=1.0, seed=0,
                       preselect={"near_rejected": True})
    run = L.start(cfg, tmp_path / "run")
    state = resume_run(run.dir, progress=False)
    recs = L.read_rounds(run.dir)
    assert "dropped_near_rejected" not in recs[0]["preselect"]  # nothing rejected yet
    assert recs[1]["preselect"]["dropped_near_rejected"] > 0
    # features stores: the embeddings are the features, so the mask can be recomputed exactly
    pool = open_pool(tmp_path / "pool.zarr")
    ids = pool.ids().tolist()
    x = pool.read_x()
    first = [a for a in state["added"] if a[2] == 0]
    rej = [ids.index(a[0]) for a in first if a[1] < 0]
    acc_rows = [ids.index(a[0]) for a in first if a[1] >= 0]
    accepted = np.concatenate([feats[:200], x[acc_rows]])
    near = near_rejected_mask(x, accepted, x[rej])
    second = [ids.index(p) for p in recs[1]["picked"]]
    assert rej and not near[second].any()


def test_default_loop_equals_plain_coreset_when_nothing_is_rejected(tmp_path, digits):
    """The default configuration (no cut, near-rejected filtering) picks exactly what plain
    whole-pool Coreset picks until the annotator rejects something (e.g. on a curated pool)."""
    from ads import loop as L
    from ads.pool import write_pool
    from cli import resume_run

    _, feats, y = digits
    kw = {"classes": [str(c) for c in range(10)]}
    write_pool(tmp_path / "lab.zarr", feats[:200], y=y[:200], **kw)
    write_pool(tmp_path / "val.zarr", feats[200:300], y=y[200:300], **kw)
    write_pool(tmp_path / "pool.zarr", feats[400:900], y=np.full(500, -1), hidden={"y": y[400:900]}, **kw)
    base = dict(pool=str(tmp_path / "pool.zarr"), labeled=str(tmp_path / "lab.zarr"), val=str(tmp_path / "val.zarr"),
                test=None, rounds=3, budget=20, strategy="coreset", seed=0)
    picks = {}
    for name, cfg in {"default": L.LoopConfig(**base),
                      "plain": L.LoopConfig(**base, fraction=1.0, scorer="knn-shapley", preselect={"near_rejected": False})}.items():
        run = L.start(cfg, tmp_path / name)
        resume_run(run.dir, progress=False)
        picks[name] = [r["picked"] for r in L.read_rounds(run.dir)]
    assert picks["default"] == picks["plain"] and sum(map(len, picks["default"])) == 60
