"""The CLI end to end on small real data (optdigits), through CliRunner and a subprocess."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from ads.pool import open_pool, write_pool
from ads.shapley import knn_shapley


def run(args, tmp_path=None):
    """Invoke the CLI through ``cli.main`` (the console script's error handling)."""
    import click

    @click.command()
    def entry():
        cli.main([str(a) for a in args])

    env = {"ADS_CACHE": str(tmp_path / "cache")} if tmp_path is not None else {}
    return CliRunner().invoke(entry, [], env=env)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_select_features_end_to_end(tmp_path, feature_stores):
    out = tmp_path / "sel.csv"
    args = ["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--val",
            feature_stores["val"], "--budget", 20, "--out", out, "--seed", 3]
    r = run(args, tmp_path)
    paper = run(args[:-4] + ["--fraction", 0.1, "--scorer", "knn-shapley", "--json", "-q"], tmp_path)
    assert json.loads(paper.stdout)["n_candidates"] == 60  # max(20, ceil(0.1 * 600))
    assert r.exit_code == 0, r.output
    rows = read_csv(out)
    assert len(rows) == 20 and len({r["id"] for r in rows}) == 20
    pool_ids = set(open_pool(feature_stores["pool"]).ids())
    assert {r["id"] for r in rows} <= pool_ids
    assert "600 candidates after pre-selection" in r.output  # the default: no cut (fraction 1)
    first = out.read_text()
    again = run(args, tmp_path)
    assert again.exit_code == 2 and "already exists; pass --overwrite" in again.output  # one policy for outputs
    assert out.read_text() == first
    assert run(args + ["--overwrite"], tmp_path).exit_code == 0
    assert out.read_text() == first  # same seed -> same selection


@pytest.mark.parametrize("top_m,aggregate", [(10, "max"), (3, "weighted"), (2, "mean")])
def test_preselection_keeps_top_scores(tmp_path, feature_stores, top_m, aggregate):
    import strategies
    from ads.score import make_scorer
    from ads.select import select

    sel = select(feature_stores["pool"], feature_stores["labeled"], feature_stores["val"], budget=10, fraction=0.05,
                 scorer=make_scorer("knn-shapley", top_m=top_m, aggregate=aggregate),
                 strategy=strategies.get("coreset"), progress=False)
    # Recompute the scores independently of the pipeline's pre-selection.
    pool = open_pool(feature_stores["pool"])
    lab = open_pool(feature_stores["labeled"])
    val = open_pool(feature_stores["val"])
    from ads.embed import FeatureEmbedder
    from ads.regress import ValueRegressor

    v = knn_shapley(lab.read_x(), lab.y(), val.read_x(), val.y(), k=10)
    emb = FeatureEmbedder().fit(lab.read_x(), lab.y(), val.read_x(), val.y(), 10)
    reg = ValueRegressor(top_m=top_m, aggregate=aggregate).fit(lab.read_x(), lab.y(), v, 10)
    scores = reg.predict(pool.read_x(), emb.predict_proba(pool.read_x()))
    top = set(np.argsort(-scores, kind="stable")[:30])
    assert set(sel.indices) <= top
    np.testing.assert_allclose(sel.scores, scores[sel.indices], atol=1e-9)


def test_select_json_fraction_one_and_holdout(tmp_path, feature_stores):
    r = run(["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--budget", 7,
             "--fraction", 1, "--json"], tmp_path)
    assert r.exit_code == 0, r.output
    assert "holding out 20 of 200 labeled points" in r.output
    payload = json.loads(r.output.strip().splitlines()[-1])
    assert payload["n_candidates"] == 600 and len(payload["picked"]) == 7


def test_select_images_trains_network_and_reuses_cache(tmp_path, image_stores):
    args = ["select", "--pool", image_stores["pool"], "--labeled", image_stores["labeled"], "--val",
            image_stores["val"], "--budget", 15, "--epochs", 3, "--out", tmp_path / "s.csv"]
    r = run(args, tmp_path)
    assert r.exit_code == 0, r.output
    assert "embedding model cnn: validation accuracy" in r.output
    r2 = run(args + ["--overwrite"], tmp_path)
    assert "reusing cache" in r2.output and "embedding model" not in r2.output
    assert read_csv(tmp_path / "s.csv") and len(read_csv(tmp_path / "s.csv")) == 15
    # `ads value` on the same stores and network reuses select's embeddings (no retraining)
    r3 = run(["value", "--labeled", image_stores["labeled"], "--val", image_stores["val"], "--epochs", 3,
              "--out", tmp_path / "v.csv"], tmp_path)
    assert r3.exit_code == 0, r3.output
    assert "reusing cache" in r3.output and "embedding model" not in r3.output
    assert len(read_csv(tmp_path / "v.csv")) == 200


def test_value_features_equals_library(tmp_path, feature_stores):
    out = tmp_path / "values.csv"
    r = run(["value", "--labeled", feature_stores["labeled"], "--val", feature_stores["val"], "--k", 5, "--out", out], tmp_path)
    assert r.exit_code == 0, r.output
    rows = read_csv(out)
    lab, val = open_pool(feature_stores["labeled"]), open_pool(feature_stores["val"])
    want = knn_shapley(lab.read_x(), lab.y(), val.read_x(), val.y(), k=5)
    assert [r["id"] for r in rows] == list(lab.ids())
    np.testing.assert_array_equal([float(r["value"]) for r in rows], want)


def test_pool_create_and_info(tmp_path, digits):
    _, feats, y = digits
    np.savez(tmp_path / "f.npz", x=feats[:30], y=y[:30])
    r = run(["pool", "create", tmp_path / "f.zarr", "--from-npz", tmp_path / "f.npz", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["kind"] == "features" and info["shape"] == [30, 64] and info["labeled"] == 30
    r = run(["pool", "info", tmp_path / "f.zarr"])
    assert "labeled    30 of 30" in r.output


def _bad_cases(stores, tmp_path):
    p, l, v = stores["pool"], stores["labeled"], stores["val"]
    # A labeled store missing class 9, one with other feature dimension, one with NaN.
    lab = open_pool(l)
    x, y = lab.read_x(), lab.y()
    no9 = write_pool(tmp_path / "no9.zarr", x[y != 9], y=y[y != 9], classes=lab.classes)
    narrow = write_pool(tmp_path / "narrow.zarr", x[:, :10], y=y, classes=lab.classes)
    import zarr

    nan = write_pool(tmp_path / "nan.zarr", x, y=y, classes=lab.classes)
    zarr.open_group(str(nan), mode="r+")["x"][4, 2] = np.nan
    base = ["select", "--pool", p, "--labeled", l, "--val", v]
    return [
        (["select", "--pool", tmp_path / "missing.zarr", "--labeled", l, "--budget", 5], r"pool '.*missing.zarr' does not exist"),
        (base + ["--budget", 601], r"'budget' parameter of ads select \(601\) is larger than the pool '.*pool.zarr' \(600 points\)"),
        (base + ["--budget", 0], r"'budget' parameter of ads select must be an int >= 1. Got 0"),
        (base + ["--budget", 5, "--fraction", 0], r"'fraction' parameter of ads select must be a number in \(0, 1\]"),
        (base + ["--budget", 5, "--strategy", "nope"], r"Unknown strategy 'nope'. Valid strategies: .*coreset"),
        (["select", "--pool", p, "--labeled", no9, "--val", v, "--budget", 5], r"class '9' has no labeled point"),
        (["select", "--pool", p, "--labeled", narrow, "--val", v, "--budget", 5], r"feature dimension \(64,\); the labeled store '.*narrow.zarr' has \(10,\)"),
        (["select", "--pool", p, "--labeled", nan, "--val", v, "--budget", 5], r"array 'x' has NaN or inf at row 4"),
        (["value", "--labeled", l, "--val", narrow, "--out", tmp_path / "v.csv"], r"feature dimension"),
    ]


def test_bad_input_one_line_exit_2_no_output(tmp_path, feature_stores):
    import re

    for args, pattern in _bad_cases(feature_stores, tmp_path):
        out = tmp_path / "o.csv"
        r = run(args + (["--out", out] if args[0] == "select" else []), tmp_path)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("ads: error:")]
        assert len(lines) == 1 and re.search(pattern, lines[0]), (args, r.output)
        assert "Traceback" not in r.output
        assert not out.exists() and not (tmp_path / "v.csv").exists()


def test_real_subprocess_error_and_success(tmp_path, feature_stores):
    env_cache = {"ADS_CACHE": str(tmp_path / "cache")}
    import os

    env = {**os.environ, **env_cache}
    bad = subprocess.run([sys.executable, "-m", "cli", "select", "--pool", str(tmp_path / "x.zarr"), "--labeled",
                          str(feature_stores["labeled"]), "--budget", "3"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "does not exist" in bad.stderr and bad.stdout == ""
    ok = subprocess.run([sys.executable, "-m", "cli", "select", "--pool", str(feature_stores["pool"]), "--labeled",
                         str(feature_stores["labeled"]), "--val", str(feature_stores["val"]), "--budget", "4", "-q"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == "id,score" and len(ok.stdout.splitlines()) == 5
    assert ok.stderr == ""


def test_dvrl_from_the_cli(tmp_path, feature_stores):
    from ads.dvrl import dvrl_values

    out = tmp_path / "dv.csv"
    r = run(["value", "--labeled", feature_stores["labeled"], "--val", feature_stores["val"], "--method", "dvrl",
             "--dvrl-iterations", 15, "--out", out, "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    got = np.array([float(x["value"]) for x in read_csv(out)])
    lab, val = open_pool(feature_stores["labeled"]), open_pool(feature_stores["val"])
    want = dvrl_values(lab.read_x(), lab.y(), val.read_x(), val.y(), n_classes=10, iterations=15, random_state=0, progress=False)
    np.testing.assert_array_equal(got, want)
    assert got.std() > 0
    sel = tmp_path / "sel.csv"
    r = run(["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--val",
             feature_stores["val"], "--budget", 12, "--scorer", "dvrl", "--dvrl-iterations", 15, "--out", sel, "--json"], tmp_path)
    assert r.exit_code == 0, r.output
    payload = json.loads(r.output.strip().splitlines()[-1])
    assert payload["scorer"] == "dvrl" and len(read_csv(sel)) == 12


@pytest.mark.parametrize("fraction", [0.1, 1])
def test_every_strategy_through_select(tmp_path, feature_stores, fraction):
    import strategies

    for name in strategies.available():
        out = tmp_path / f"{name}-{fraction}.csv"
        r = run(["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--val",
                 feature_stores["val"], "--budget", 8, "--fraction", fraction, "--strategy", name, "--out", out, "-q"], tmp_path)
        assert r.exit_code == 0, (name, r.output)
        ids = [row["id"] for row in read_csv(out)]
        assert len(ids) == len(set(ids)) == 8, name
