"""Out-of-core pool stages and the Dask runner (issue 13).

The oracle of the streaming pre-selection is the in-memory :meth:`Preselect.apply`; the
oracle of the Dask path is the in-process path (identical picks and scores, bit for bit).
A real ``distributed.LocalCluster`` with 2 worker processes; stores small enough that
many work blocks (``ADS_BLOCK_BYTES``) are exercised.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies
from ads.embed import EmbedConfig, EmbeddingCache
from ads.pool import write_pool
from ads.score import make_scorer
from ads.select import Preselect, rank_and_pick, select
from ads.stages import InProcess, NearRefs
from ads.stream import CandidatePlan, MemoryEmbeddings, PoolEmbeddings, TopRows, work_blocks

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["badge", "coreset", "coreset-weighted", "entropy", "kmedians", "margin", "random"]
# pre-selection per strategy: every shape runs on Dask and in-process
SHAPES = {"badge": Preselect(shape="balanced", fraction=0.5), "coreset": Preselect(shape="top", fraction=0.4),
          "coreset-weighted": Preselect(shape="threshold", percentile=20, max_candidates=200),
          "entropy": Preselect(shape="top", fraction=1.0), "kmedians": Preselect(shape="top", fraction=0.3),
          "margin": Preselect(shape="balanced", fraction=0.3, max_candidates=150), "random": Preselect(shape="top", fraction=0.5)}


@pytest.fixture(scope="module")
def cluster():
    from ads.distributed import connect

    runner = connect("local:2")
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def stores(tmp_path_factory, digits):
    """Features (quantised: heavy score ties, plus 40 exact duplicate rows) and 8x8 image
    stores, 50-row chunks: the 640-row pools span 13 chunks."""
    images, feats, y = digits
    root = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    lab, val, pool = perm[:200], perm[200:350], perm[350:950]
    pool = np.concatenate([pool, pool[:40]])  # duplicates
    kw = {"classes": [str(c) for c in range(10)], "chunk_rows": 50}
    q = (np.round(feats / 8) * 8).astype(np.float32)
    out = {}
    for name, x in (("f", q), ("i", images)):
        out[name] = {
            "labeled": write_pool(root / f"{name}l.zarr", x[lab], ids=[f"d{i}" for i in lab], y=y[lab], **kw),
            "val": write_pool(root / f"{name}v.zarr", x[val], ids=[f"d{i}" for i in val], y=y[val], **kw),
            "pool": write_pool(root / f"{name}p.zarr", x[pool], ids=[f"p{j}" for j in range(len(pool))],
                               y=np.full(len(pool), -1), hidden={"y": y[pool]}, **kw),
        }
    return root, out


def _select(s, strategy, cache, runner, scorer="direct"):
    return select(s["pool"], s["labeled"], s["val"], budget=12, scorer=make_scorer(scorer),
                  strategy=strategies.get(strategy), preselect=SHAPES[strategy], embed=EmbedConfig(epochs=3, seed=0),
                  cache=EmbeddingCache(cache), progress=False, runner=runner)


@pytest.mark.parametrize("kind", ["f", "i"])
def test_dask_gives_identical_picks_for_every_strategy(stores, cluster, kind, tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_BLOCK_BYTES", "1")  # one chunk per block: 13 blocks
    root, all_stores = stores
    s = all_stores[kind]
    # first calls embed the pool (in-process into one cache, on the workers into another)
    a = _select(s, "coreset", tmp_path / "a", None)
    b = _select(s, "coreset", tmp_path / "b", cluster)
    pa = PoolEmbeddings.open(next(p for p in (tmp_path / "a").iterdir() if (p / "zarr.json").exists()))
    pb = PoolEmbeddings.open(next(p for p in (tmp_path / "b").iterdir() if (p / "zarr.json").exists()))
    assert len(pa.blocks) == 13 and pa.blocks == pb.blocks
    np.testing.assert_array_equal(np.asarray(pa.emb), np.asarray(pb.emb))
    np.testing.assert_array_equal(np.asarray(pa.proba), np.asarray(pb.proba))
    np.testing.assert_array_equal(a.ids, b.ids)
    # every worker that ran a task re-tuned glibc's malloc (Dask's MALLOC_TRIM_THRESHOLD_ slows inference)
    assert all(cluster.client.run(lambda: __import__("ads.distributed").distributed._MALLOC_TUNED).values())
    for name in STRATEGIES:
        x = _select(s, name, tmp_path / "a", None)
        y = _select(s, name, tmp_path / "a", cluster)
        np.testing.assert_array_equal(x.ids, y.ids, err_msg=name)
        np.testing.assert_array_equal(x.scores, y.scores, err_msg=name)
        assert x.n_candidates == y.n_candidates and x.preselect == y.preselect, name
    # the pool's scores really tie (duplicate rows at least): the tie rule is exercised
    from ads.select import score_stores

    sc = score_stores(s["pool"], s["labeled"], s["val"], scorer=make_scorer("direct"), embed=EmbedConfig(epochs=3, seed=0),
                      cache=EmbeddingCache(tmp_path / "a"), progress=False)["scores"]
    assert np.unique(sc).size <= sc.size - 40


@pytest.mark.parametrize("kind, patch, strategy", [("f", None, "coreset"), ("i", 10.0, "entropy")])
def test_dask_loop_gives_the_same_rounds(stores, cluster, tmp_path, monkeypatch, kind, patch, strategy):
    """Also with --patch-lowest on images: the network with its patched head goes to the
    workers, and the picks (entropy: from the patched head's probabilities) are the same."""
    from ads import loop as L

    monkeypatch.setenv("ADS_BLOCK_BYTES", "1")
    _, all_stores = stores
    s = all_stores[kind]
    picks = {}
    for name, runner in (("in", None), ("dask", cluster)):
        cfg = L.LoopConfig(pool=str(s["pool"]), labeled=str(s["labeled"]), val=str(s["val"]), test=None, rounds=2, budget=10,
                           strategy=strategy, fraction=0.5, seed=0, oracle="hidden", scorer="direct",
                           scorer_params={"k": 10, "aggregate": "expected"}, embed={"arch": "auto", "epochs": 3, "device": "cpu"},
                           patch_lowest=patch)
        L.start(cfg, tmp_path / name)
        state = L.resume(tmp_path / name, strategy=strategies.get(strategy), scorer=make_scorer("direct"),
                         progress=False, runner=runner)
        picks[name] = [a[0] for a in state["added"]]
        if patch is not None:
            assert all(r["patch"]["n_removed"] == int(np.ceil(0.1 * r["n_labeled"])) for r in L.read_rounds(tmp_path / name))
    assert len(picks["in"]) == 20 and picks["in"] == picks["dask"]


def test_killed_worker_still_gives_the_same_picks(stores, tmp_path, monkeypatch):
    """A worker process dies (os._exit) while scoring its first block; Dask reruns the
    lost tasks on the other worker (and the restarted one): same picks."""
    from ads.distributed import connect

    monkeypatch.setenv("ADS_BLOCK_BYTES", "1")
    _, all_stores = stores
    s = all_stores["f"]
    want = _select(s, "coreset", tmp_path / "c", None)
    mark = tmp_path / "killed"
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with connect("local:2") as runner:
            got = select(s["pool"], s["labeled"], s["val"], budget=12, scorer=KillOnce(make_scorer("direct"), str(mark)),
                         strategy=strategies.get("coreset"), preselect=SHAPES["coreset"],
                         embed=EmbedConfig(epochs=3, seed=0), cache=EmbeddingCache(tmp_path / "c"), progress=False,
                         runner=runner)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert mark.exists()  # a worker did die
    np.testing.assert_array_equal(want.ids, got.ids)
    np.testing.assert_array_equal(want.scores, got.scores)


class KillOnce:
    """A scorer whose first ``score`` call on a worker kills that worker's process."""

    def __init__(self, inner, mark):
        self.inner, self.mark, self.name = inner, mark, inner.name

    def fit(self, *a, **kw):
        self.inner.fit(*a, **kw)
        return self

    def calibration_scores(self, *a):
        return self.inner.calibration_scores(*a)

    def score(self, emb, proba):
        if not os.path.exists(self.mark):
            Path(self.mark).write_text(str(os.getpid()))
            os._exit(1)
        return self.inner.score(emb, proba)


def test_bad_scheduler_is_one_line_exit_2(stores):
    _, all_stores = stores
    s = all_stores["f"]
    base = [sys.executable, "-m", "cli", "select", "--pool", str(s["pool"]), "--labeled", str(s["labeled"]),
            "--budget", "5", "-q", "--no-cache"]
    r = subprocess.run([*base, "--scheduler", "tcp://127.0.0.1:9"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("ads: error: ads select: cannot reach the Dask scheduler at "
                                                     "'tcp://127.0.0.1:9'") and r.stderr.count("\n") == 1, r.stderr
    r = subprocess.run([*base, "--scheduler", "local:zero"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr == ("ads: error: ads select: The 'scheduler' parameter must be local, local:N "
                                              "or tcp://HOST:PORT. Got 'local:zero'.\n")
    env = {**os.environ, "ADS_SCHEDULER": "nowhere"}
    r = subprocess.run(base, capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert r.returncode == 2 and "Got 'nowhere'" in r.stderr and r.stderr.count("\n") == 1


def test_cli_select_on_local_cluster_equals_in_process(stores, tmp_path):
    _, all_stores = stores
    s = all_stores["f"]
    base = [sys.executable, "-m", "cli", "select", "--pool", str(s["pool"]), "--labeled", str(s["labeled"]),
            "--val", str(s["val"]), "--budget", "8", "-q", "--cache-dir", str(tmp_path / "cache"), "--fraction", "0.5"]
    env = {**os.environ, "ADS_BLOCK_BYTES": "1"}
    a = subprocess.run(base, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    b = subprocess.run([*base, "--scheduler", "local:2"], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert a.returncode == 0 and b.returncode == 0, b.stderr
    assert a.stdout == b.stdout and a.stdout.count("\n") == 9  # header + 8 picks


# ---------------------------------------------------------------- streaming pre-selection vs in-memory

def _stream(pre, scores, proba, shares, budget, exclude, calibration, blocks, near_mask=None):
    """The streaming plan over ``blocks`` (shuffled merge order) with the in-memory rule's inputs."""
    n = scores.shape[0]
    excl = np.zeros(n, dtype=bool) if exclude is None else exclude
    plan = pre.plan(budget=budget, class_shares=shares, n_prior=int((~excl).sum()), n_pool=n, calibration=calibration)
    parts = []
    for s, e in blocks:
        avail = ~excl[s:e]
        nm = None
        if near_mask is not None:
            nm = near_mask[s:e] & avail
            avail = avail & ~nm
        parts.append(plan.summarize(s, scores[s:e], proba[s:e].argmax(1), avail, nm))
    total = plan.new()
    for i in np.random.default_rng(len(blocks)).permutation(len(parts)):
        total.merge(parts[i])
    return plan.finalize(total)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 120), levels=st.sampled_from([2, 3, 1000]), c=st.integers(1, 4), chunk=st.integers(1, 40),
       budget=st.integers(1, 30), fraction=st.sampled_from([0.01, 0.05, 0.3, 1.0]),
       shape=st.sampled_from(["top", "balanced", "threshold"]), cap=st.sampled_from([None, 0, 1, 7, 50]),
       pct=st.sampled_from([0.0, 30.0, 90.0]), excl=st.sampled_from([0.0, 0.3]), near=st.booleans(),
       seed=st.integers(0, 10**6))
def test_streaming_preselection_equals_preselect(n, levels, c, chunk, budget, fraction, shape, cap, pct, excl, near, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, n).astype(np.float64) / levels  # heavy ties with 2 or 3 levels
    proba = rng.dirichlet(np.ones(c), n)
    if levels == 2:
        proba = np.round(proba, 1)  # ties in the predicted class too (argmax -> lower class)
    shares = rng.dirichlet(np.ones(c))
    exclude = rng.random(n) < excl if excl else None
    near_mask = (rng.random(n) < 0.2) if near else None
    calibration = rng.integers(0, levels, 25).astype(np.float64) / levels
    budget = min(budget, n)
    pre = Preselect(shape=shape, fraction=fraction, percentile=pct, max_candidates=cap).validate()
    ex_all = exclude if near_mask is None else (near_mask if exclude is None else exclude | near_mask)
    n_avail = n - (0 if ex_all is None else int(ex_all.sum()))
    if n_avail < budget:
        return
    want, want_info = pre.apply(scores, budget=budget, proba=proba, class_shares=shares, calibration=calibration,
                                exclude=ex_all)
    got, got_scores, got_info = _stream(pre, scores, proba, shares, budget, exclude, calibration,
                                        work_blocks(n, chunk, 1, 1), near_mask)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_scores, scores[want])
    assert got_info == want_info


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 400), k=st.integers(1, 60), levels=st.integers(1, 6), nan=st.floats(0, 0.5),
       block=st.integers(1, 90), seed=st.integers(0, 2**31))
def test_topk_with_its_floor_equals_a_full_sort(n, k, levels, nan, block, seed):
    """Oracle: one stable sort of all rows. Heavy ties, NaN and -inf scores, rows in random
    block order, blocks added and merged (the floor drops rows on arrival)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, n).astype(float)
    scores[rng.random(n) < nan] = np.nan
    scores[rng.random(n) < 0.05] = -np.inf
    index = rng.permutation(n)
    t = TopRows(k)
    for s in range(0, n, block):
        part = TopRows(k).add(scores[s : s + block], index[s : s + block])
        (t.merge(part) if rng.random() < 0.5 else t.add(scores[s : s + block], index[s : s + block]))
    by_index = np.argsort(index)
    want = by_index[np.argsort(-scores[by_index], kind="stable")][:k]
    idx, sc = t.best()
    assert idx.tolist() == index[want].tolist()
    np.testing.assert_array_equal(sc, scores[want])


def test_topk_keeps_the_lower_index_on_ties():
    t = TopRows(3)
    t.add(np.array([1.0, 1.0, 1.0]), np.array([9, 4, 7]))
    t.add(np.array([1.0, 0.5, 1.0]), np.array([2, 1, 8]))
    idx, sc = t.best()
    assert idx.tolist() == [2, 4, 7] and sc.tolist() == [1.0, 1.0, 1.0]
    # dask.array.argtopk does not keep this rule; ours must, whatever the block order
    u = TopRows(3).merge(TopRows(3).add(np.array([1.0, 0.5, 1.0]), np.array([2, 1, 8])))
    u.merge(TopRows(3).add(np.array([1.0, 1.0, 1.0]), np.array([9, 4, 7])))
    assert u.best()[0].tolist() == [2, 4, 7]


def test_rank_and_pick_near_rejected_streaming_equals_in_memory(digits):
    """Near-rejected dropping inside the blocks equals the in-memory mask + apply."""
    from ads.embed import Embeddings
    from ads.select import near_rejected_mask
    from ads.task import LabeledData

    _, feats, y = digits
    rng = np.random.default_rng(3)
    x = feats.astype(np.float32)
    lab, pool = np.arange(200), np.arange(200, 900)
    proba = rng.dirichlet(np.ones(10), pool.size).astype(np.float32)
    data = LabeledData(x=x[lab], y=y[lab], ids=lab.astype(str), x_val=x[lab[:50]], y_val=y[lab[:50]], val_source="test")
    rejected = np.arange(0, 60, 3)
    exclude = np.zeros(pool.size, dtype=bool)
    exclude[:60] = True
    blocks = work_blocks(pool.size, 64, 1, 1)
    em = Embeddings(x[lab], x[lab[:50]], x[pool], proba, 1.0, "features", False, proba[:50],
                    MemoryEmbeddings(x[pool], proba, blocks))
    info = {}
    idx, sc, n_cand = rank_and_pick(em, data, 10, budget=10, scorer=make_scorer("direct"), strategy=strategies.get("random"),
                                    preselect=Preselect(fraction=0.2), exclude=exclude, rejected=rejected, info=info)
    scorer = make_scorer("direct").fit(x[lab], y[lab], x[lab[:50]], y[lab[:50]], n_classes=10, random_state=0)
    scores = np.asarray(scorer.score(x[pool], proba), dtype=np.float64)
    near = near_rejected_mask(x[pool], x[lab], x[pool][rejected]) & ~exclude
    cand, _ = Preselect(fraction=0.2).apply(scores, budget=10, proba=proba, class_shares=np.bincount(y[lab]) / 200,
                                            exclude=exclude | near)
    assert info["dropped_near_rejected"] == int(near.sum()) and n_cand == cand.size
    assert set(idx) <= set(cand)
    np.testing.assert_allclose(sc, scores[idx], rtol=0, atol=1e-12)


def test_in_process_runner_blocks_and_memory_source_agree(digits):
    """The same summary from a MemoryEmbeddings in one block and in many."""
    _, feats, y = digits
    x = feats.astype(np.float32)
    proba = np.random.default_rng(0).dirichlet(np.ones(10), 800).astype(np.float32)
    scorer = make_scorer("direct").fit(x[:200], y[:200], x[200:300], y[200:300], n_classes=10, random_state=0)
    plan = CandidatePlan("top", 10, 0.1, np.full(10, 0.1), 800)
    one = plan.finalize(InProcess().summarize(scorer, MemoryEmbeddings(x[300:1100], proba), plan, np.empty(0, int),
                                              progress=False))
    many = plan.finalize(InProcess().summarize(scorer, MemoryEmbeddings(x[300:1100], proba, work_blocks(800, 30, 1, 1)),
                                               plan, np.empty(0, int), NearRefs(x[:200], x[:0]), progress=False))
    np.testing.assert_array_equal(one[0], many[0])


# ---------------------------------------------------------------- ads embed, ads pool info

def test_ads_embed_then_select_reuses_and_pool_info_lists(stores, tmp_path):
    import json

    from click.testing import CliRunner

    from cli import ads

    _, all_stores = stores
    s = all_stores["i"]
    cache = tmp_path / "cache"
    args = ["--pool", str(s["pool"]), "--labeled", str(s["labeled"]), "--val", str(s["val"]), "--epochs", "2",
            "--cache-dir", str(cache)]
    r = subprocess.run([sys.executable, "-m", "cli", "embed", *args, "--json", "-q"], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["reused"] is False and first["pool"] == 640 and first["pool_items_per_second"] > 0
    pe = PoolEmbeddings.open(first["pool_embeddings"])
    assert pe is not None and pe.attrs["n"] == 640 and np.asarray(pe.emb).shape == (640, first["dim"])
    again = json.loads(CliRunner().invoke(ads, ["embed", *args, "--json", "-q"]).output)
    assert again["reused"] is True and again["pool_embeddings"] == first["pool_embeddings"]
    # select's embedding step with the same stores, network and seed reuses them: no training
    from ads.embed import embed_stores
    from ads.task import load_task

    task = load_task(s["pool"], s["labeled"], s["val"], seed=0)
    em = embed_stores(task, task.pool, EmbedConfig(epochs=2, seed=0), cache=EmbeddingCache(cache), progress=False)
    assert em.cached and em.pool_source.path == Path(first["pool_embeddings"])
    sel = CliRunner().invoke(ads, ["select", *args, "--budget", "5", "-q"])
    assert sel.exit_code == 0 and sel.output.count("\n") == 6
    info = json.loads(CliRunner().invoke(ads, ["pool", "info", str(s["pool"]), "--cache-dir", str(cache), "--json"]).output)
    assert [e["path"] for e in info["embeddings"]] == [first["pool_embeddings"]] and info["embeddings"][0]["current"]
    none = json.loads(CliRunner().invoke(ads, ["pool", "info", str(s["labeled"]), "--cache-dir", str(cache), "--json"]).output)
    assert none["embeddings"] == []
    bad = CliRunner().invoke(ads, ["embed", *args, "--no-cache"])
    assert bad.exit_code != 0


# ---------------------------------------------------------------- coreset --distributed (composable coreset)

def _radius(X, centers_idx, X_labeled):
    C = np.concatenate([X_labeled, X[centers_idx]]) if X_labeled is not None else X[centers_idx]
    d = np.sqrt(((X[:, None, :] - C[None, :, :]) ** 2).sum(-1))
    return d.min(axis=1).max()


@settings(max_examples=150, deadline=None)
@given(n_cand=st.integers(2, 11), n_lab=st.integers(0, 3), k=st.integers(1, 3), part=st.integers(1, 5),
       levels=st.sampled_from([2, 4, 100]), seed=st.integers(0, 10**6))
def test_composable_coreset_is_within_4x_of_the_optimal_radius(n_cand, n_lab, k, part, levels, seed):
    """Oracle: the optimal k-center radius by enumerating every k-subset of candidates
    (labeled points are fixed centers). Greedy <= 2 OPT, composable <= 4 OPT; composable
    equals the plain greedy run per partition and then on the union."""
    from itertools import combinations

    from reference import naive_coreset
    from strategies.coreset import composable_coreset, coreset_greedy

    rng = np.random.default_rng(seed)
    X = rng.integers(0, levels, (n_cand, 2)).astype(np.float64)  # few levels: duplicates and ties
    L = rng.integers(0, levels, (n_lab, 2)).astype(np.float64) if n_lab else None
    k = min(k, n_cand)
    opt = min(_radius(X, list(c), L) for c in combinations(range(n_cand), k))
    g = coreset_greedy(X, k, L)
    c = composable_coreset(X, k, L, partition_rows=part)
    assert len(set(c.tolist())) == k
    assert _radius(X, g, L) <= 2 * opt + 1e-9
    assert _radius(X, c, L) <= 4 * opt + 1e-9
    # the same two stages with the plain oracle greedy
    union = np.sort(np.concatenate([s + np.asarray(naive_coreset(X[s:s + part], min(k, X[s:s + part].shape[0]), L))
                                    for s in range(0, n_cand, part)]))
    want = union[np.asarray(naive_coreset(X[union], k, L))] if n_cand > part else np.asarray(naive_coreset(X, k, L))
    np.testing.assert_array_equal(c, want)


def test_distributed_coreset_on_dask_equals_in_process_and_reads_lazily(stores, cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_BLOCK_BYTES", "1")
    _, all_stores = stores
    s = all_stores["f"]
    kw = dict(budget=12, scorer=make_scorer("direct"), preselect=Preselect(fraction=0.5), embed=EmbedConfig(epochs=3, seed=0),
              cache=EmbeddingCache(tmp_path / "c"), progress=False)
    exact = select(s["pool"], s["labeled"], s["val"], strategy=strategies.get("coreset"), **kw)
    a = select(s["pool"], s["labeled"], s["val"], strategy=strategies.get("coreset", distributed=True, partition_rows=60), **kw)
    b = select(s["pool"], s["labeled"], s["val"], strategy=strategies.get("coreset", distributed=True, partition_rows=60),
               runner=cluster, **kw)
    one = select(s["pool"], s["labeled"], s["val"], strategy=strategies.get("coreset", distributed=True), **kw)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(one.ids, exact.ids)  # one partition: the exact greedy
    assert len(set(a.ids)) == 12


def test_distributed_flag_only_for_coreset(stores):
    _, all_stores = stores
    s = all_stores["f"]
    r = subprocess.run([sys.executable, "-m", "cli", "select", "--pool", str(s["pool"]), "--labeled", str(s["labeled"]),
                        "--budget", "5", "--strategy", "kmedians", "--distributed", "-q", "--no-cache"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr == ("ads: error: ads select: --distributed applies to --strategy coreset only. "
                                              "Got --strategy kmedians.\n")


def test_loop_keeps_distributed_coreset_across_resume(stores, tmp_path):
    """`ads loop --distributed` records the strategy's parameters in the run's configuration:
    every round (and a resume, and the service) builds the distributed coreset; other
    strategies are refused before the run directory is made."""
    import json

    import click
    from click.testing import CliRunner

    import cli

    _, all_stores = stores
    s = all_stores["f"]
    run = tmp_path / "run"
    args = ["loop", "--pool", str(s["pool"]), "--labeled", str(s["labeled"]), "--val", str(s["val"]), "--rounds", "1",
            "--budget", "5", "--workdir", str(run), "--distributed", "-q", "--json"]
    r = CliRunner().invoke(cli.ads, args)
    assert r.exit_code == 0, r.output
    config = json.loads((run / "state.json").read_text())["config"]
    assert config["strategy"] == "coreset" and config["strategy_params"] == {"distributed": True}
    strategy, _ = cli.serve_parts(None, config)
    assert strategy.distributed is True
    assert cli.serve_parts("kmedians", config)[0].name == "kmedians"
    bad = [*args[:-4], str(tmp_path / "run2"), "--strategy", "badge", "--distributed"]
    bad = CliRunner().invoke(click.command()(lambda: cli.main(bad)), [])
    assert bad.exit_code == 2 and bad.stderr == ("ads: error: ads loop: --distributed applies to --strategy coreset "
                                                 "only. Got --strategy badge.\n")
    assert not (tmp_path / "run2" / "state.json").exists()


def test_pretrained_embedder_on_dask_equals_in_process(stores, cluster, tmp_path, monkeypatch):
    """The frozen EfficientNet-Lite0 (issue 14) shipped to the workers: the same pool
    embeddings up to float rounding (oneDNN splits the backbone's reductions by thread count:
    workers run 1 thread, the client 2), the same picks; backbone features cached by content."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="the 'pretrained' extra is not installed")
    monkeypatch.setenv("ADS_BLOCK_BYTES", "1")
    s = stores[1]["i"]
    cfg = EmbedConfig(arch="efficientnet-lite0", epochs=2, seed=0, input_size=32)
    picks = []
    for cache, runner in ((tmp_path / "a", None), (tmp_path / "b", cluster)):
        sel = select(s["pool"], s["labeled"], s["val"], budget=12, scorer=make_scorer("direct"),
                     strategy=strategies.get("coreset"), preselect=SHAPES["coreset"], embed=cfg,
                     cache=EmbeddingCache(cache), progress=False, runner=runner)
        picks.append(sel.ids)
    pa, pb = (PoolEmbeddings.open(next(p for p in (tmp_path / d).iterdir() if (p / "zarr.json").exists())) for d in "ab")
    np.testing.assert_allclose(np.asarray(pa.emb), np.asarray(pb.emb), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(pa.proba), np.asarray(pb.proba), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(*picks)
    assert np.asarray(pa.emb).shape[1] in (1280, 320, 192, 112)
    assert len(list((tmp_path / "b" / "backbone").glob("*.npy"))) >= 13  # the workers' blocks, one entry each
