"""The shape of the library (issue 9): parts as objects, plug-ins by entry point, no import
of `strategies` from `ads`, the pre-selection and hold-out rules, and the defects a new
user hit (each with the command that used to fail)."""

from __future__ import annotations

import ast
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from ads.errors import DataError, ParameterError
from ads.pool import open_pool, write_pool
from ads.select import preselect
from ads.task import holdout_split

ROOT = Path(__file__).resolve().parents[1]


def run(args, tmp_path=None, cwd=None):
    """``cli.main`` as the console script runs it (one-line errors, exit codes)."""
    import click

    @click.command()
    def entry():
        cli.main([str(a) for a in args])

    env = {"ADS_CACHE": str(tmp_path / "cache")} if tmp_path is not None else {}
    if cwd is None:
        return CliRunner().invoke(entry, [], env=env)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(entry, [], env=env)
    finally:
        os.chdir(old)


def _error_line(r):
    lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("ads: error:")]
    assert r.exit_code == 2 and len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


# ---------------------------------------------------------------- the shape


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_ads_never_imports_strategies():
    offenders = {str(p.relative_to(ROOT)): m for p in (ROOT / "ads").rglob("*.py") for m in _imports(p)
                 if m == "strategies" or m.startswith("strategies.")}
    assert offenders == {}, f"ads/ imports the strategies package: {offenders}"
    # and importing the pipeline does not load it as a side effect
    code = "import sys, ads.select, ads.loop, ads.valuers, ads.score; print('strategies' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_loop_does_not_need_matplotlib():
    code = "import sys, ads.loop; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


PLUGIN = '''
import numpy as np
from ads.score import Scorer
from ads.valuers import Valuer


class FirstFeature(Scorer):
    """Scores a point by its first feature (a toy plug-in)."""
    name = "first-feature"

    def __init__(self, sign=1.0):
        self.sign = sign

    def fit(self, X, y, X_val, y_val, *, n_classes, random_state=None):
        self.fitted_ = True
        return self

    def score(self, X, proba):
        return self.sign * np.asarray(X, dtype=np.float64)[:, 0]


class Ones(Valuer):
    name = "ones"

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        self.values_ = np.ones(len(y))
        return self
'''


@pytest.fixture()
def plugin_dist(tmp_path, monkeypatch):
    """A real installed distribution (a .dist-info on sys.path) declaring the entry points."""
    site = tmp_path / "site"
    (site / "adsplugin").mkdir(parents=True)
    (site / "adsplugin" / "__init__.py").write_text(PLUGIN)
    info = site / "adsplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: adsplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[ads.scorers]\nfirst-feature = adsplugin:FirstFeature\n\n[ads.valuers]\nones = adsplugin:Ones\n")
    monkeypatch.syspath_prepend(str(site))
    import importlib

    importlib.invalidate_caches()
    yield site
    from ads.score import SCORERS
    from ads.valuers import VALUERS

    SCORERS._classes.pop("first-feature", None)
    VALUERS._classes.pop("ones", None)


def test_third_party_scorer_and_valuer_by_entry_point(plugin_dist, tmp_path, feature_stores):
    from ads.score import SCORERS, make_scorer
    from ads.valuers import VALUERS, make_valuer

    assert "first-feature" in SCORERS.available() and "ones" in VALUERS.available()
    assert make_scorer("first-feature", sign=-1.0).get_params() == {"sign": -1.0}
    assert make_valuer("ones").name == "ones"
    r = run(["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--val",
             feature_stores["val"], "--budget", 5, "--scorer", "first-feature", "--strategy", "random", "--json", "-q"],
            tmp_path)
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    x0 = dict(zip(open_pool(feature_stores["pool"]).ids(), open_pool(feature_stores["pool"]).read_x()[:, 0]))
    assert payload["scorer"] == "first-feature"
    assert all(p["score"] == float(x0[p["id"]]) for p in payload["picked"])
    r = run(["value", "--labeled", feature_stores["labeled"], "--val", feature_stores["val"], "--method", "ones",
             "--out", tmp_path / "v.csv", "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    assert {row["value"] for row in csv.DictReader(open(tmp_path / "v.csv"))} == {"1.0"}


def test_unknown_scorer_and_bad_parameters_are_one_line(tmp_path, feature_stores):
    base = ["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--budget", 5]
    assert "Unknown scorer 'nope'. Valid scorers: direct, dvrl, knn-shapley" in _error_line(run(base + ["--scorer", "nope"], tmp_path))
    from ads.score import make_scorer

    with pytest.raises(ParameterError, match=r"Bad parameters for scorer 'knn-shapley': .*'bogus'"):
        make_scorer("knn-shapley", bogus=1)


def test_python_api_with_built_parts(feature_stores):
    import strategies
    from ads.embed import embed_stores
    from ads.score import make_scorer
    from ads.select import select
    from ads.task import load_task

    sel = select(feature_stores["pool"], feature_stores["labeled"], feature_stores["val"], budget=6,
                 scorer=make_scorer("knn-shapley", k=5), strategy=strategies.get("coreset"), progress=False)
    assert len(sel.ids) == 6 and sel.scorer == "knn-shapley" and sel.strategy == "coreset"
    # the embedding call the README shows for users of the strategies' Python API
    task = load_task(feature_stores["pool"], feature_stores["labeled"], feature_stores["val"])
    em = embed_stores(task, task.pool, progress=False)
    assert em.emb_pool.shape == (600, 64) and em.proba_pool.shape == (600, 10)
    idx = strategies.get("coreset").select(em.emb_pool, 6, X_labeled=em.emb, random_state=0)
    assert len(set(idx)) == 6


# ---------------------------------------------------------------- pre-selection and hold-out rules


def test_preselect_ties_go_to_the_lower_index():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 0.0])
    np.testing.assert_array_equal(preselect(scores, 2, 0.1), [1, 2])  # budget wins over ceil(0.6)
    np.testing.assert_array_equal(preselect(scores, 1, 0.5), [1, 2, 4])  # ceil(0.5 * 6) = 3
    np.testing.assert_array_equal(preselect(scores, 1, 1.0), np.arange(6))
    np.testing.assert_array_equal(preselect(np.zeros(5), 2, 0.2), [0, 1])  # all tied


def test_preselect_exclude_never_kept_and_not_counted():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    exclude = np.array([True, False, True, False, False, False])
    got = preselect(scores, 1, 0.5, exclude)  # N = 4 available -> keep ceil(2) = 2
    np.testing.assert_array_equal(got, [1, 3])
    np.testing.assert_array_equal(preselect(scores, 4, 0.1, exclude), [1, 3, 4, 5])


def test_preselect_equals_a_naive_sort():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        scores = rng.integers(0, 4, n).astype(float)  # many ties
        exclude = rng.random(n) < 0.3
        budget = int(rng.integers(1, 5))
        frac = float(rng.choice([0.1, 0.25, 0.5, 1.0]))
        avail = [i for i in range(n) if not exclude[i]]
        keep = min(len(avail), max(budget, int(np.ceil(frac * len(avail)))))
        want = sorted(sorted(avail, key=lambda i: (-scores[i], i))[:keep])
        np.testing.assert_array_equal(preselect(scores, budget, frac, exclude), want)


def test_holdout_split_is_stratified_and_keeps_every_class():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    tr, va = holdout_split(y, seed=0)
    assert va.size == 10 and np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).size == 100
    assert np.bincount(y[va], minlength=4).tolist() == [5, 3, 2, 0]  # largest remainders, ties -> lower class
    assert set(y[tr]) == {0, 1, 2, 3}
    np.testing.assert_array_equal(holdout_split(y, seed=0)[1], va)  # deterministic
    assert not np.array_equal(holdout_split(y, seed=1)[1], va)
    y2 = np.repeat(np.arange(2), [5000, 5000])
    assert holdout_split(y2, seed=0)[1].size == 500  # the cap
    with pytest.raises(DataError, match=r"too small to hold out a validation set; pass --val"):
        holdout_split(np.array([0, 1]), seed=0)


# ---------------------------------------------------------------- defects found as a new user


def test_unlabeled_pool_without_classes_works_end_to_end(tmp_path, digits):
    _, feats, y = digits
    np.savez(tmp_path / "pool.npz", x=feats[400:700], ids=np.array([f"p{i}" for i in range(300)]))
    np.savez(tmp_path / "lab.npz", x=feats[:200], y=y[:200])
    np.savez(tmp_path / "val.npz", x=feats[200:300], y=y[200:300])
    for name in ("pool", "lab", "val"):
        r = run(["pool", "create", tmp_path / f"{name}.zarr", "--from-npz", tmp_path / f"{name}.npz", "-q"])
        assert r.exit_code == 0, r.output
    assert open_pool(tmp_path / "pool.zarr").classes == []
    r = run(["pool", "info", tmp_path / "pool.zarr"])
    assert "none listed" in r.output
    r = run(["select", "--pool", tmp_path / "pool.zarr", "--labeled", tmp_path / "lab.zarr", "--val",
             tmp_path / "val.zarr", "--budget", 10, "--json", "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["picked"]) == 10


def test_default_class_lists_that_are_prefixes_agree(tmp_path, digits):
    _, feats, y = digits
    lab = write_pool(tmp_path / "lab.zarr", feats[:300], y=np.arange(300) % 4)  # classes 0..3
    two = np.arange(100) % 2
    np.savez(tmp_path / "val.npz", x=feats[300:400], y=two)
    r = run(["pool", "create", tmp_path / "val.zarr", "--from-npz", tmp_path / "val.npz"])
    assert r.exit_code == 0 and "classes inferred from the labels: 0, 1" in r.output
    pool = write_pool(tmp_path / "pool.zarr", feats[400:700])
    r = run(["select", "--pool", pool, "--labeled", lab, "--val", tmp_path / "val.zarr", "--budget", 5, "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    other = write_pool(tmp_path / "named.zarr", feats[300:400], y=two, classes=["cat", "dog"])
    line = _error_line(run(["select", "--pool", pool, "--labeled", lab, "--val", other, "--budget", 5], tmp_path))
    assert "has classes ['cat', 'dog']; the labeled store" in line


def test_flat_folder_pool_and_classes_of_folders(tmp_path, digits):
    from PIL import Image

    images, _, y = digits
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(40):
        Image.fromarray(images[600 + i]).save(flat / f"u{i:02d}.png")
    lab = tmp_path / "lab"
    for i in range(300):
        d = lab / f"digit{y[i]}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(d / f"l{i:03d}.png")
    assert run(["pool", "create", tmp_path / "flat.zarr", "--from-folder", flat, "-q"]).exit_code == 0
    line = _error_line(run(["pool", "create", tmp_path / "l.zarr", "--from-folder", lab, "--classes", "a,b"]))
    assert "--classes ['a', 'b'] differ from the sub-folders" in line
    assert run(["pool", "create", tmp_path / "l.zarr", "--from-folder", lab, "-q"]).exit_code == 0
    r = run(["select", "--pool", tmp_path / "flat.zarr", "--labeled", tmp_path / "l.zarr", "--budget", 5,
             "--epochs", 2, "-q", "--no-cache"], tmp_path)
    assert r.exit_code == 0, r.output
    assert len(r.stdout.strip().splitlines()) == 6


def test_npz_that_exists_names_the_output_and_the_option(tmp_path, digits):
    _, feats, y = digits
    np.savez(tmp_path / "f.npz", x=feats[:20], y=y[:20])
    assert run(["pool", "create", tmp_path / "f.zarr", "--from-npz", tmp_path / "f.npz", "-q"]).exit_code == 0
    line = _error_line(run(["pool", "create", tmp_path / "f.zarr", "--from-npz", tmp_path / "f.npz"]))
    assert "store '" in line and "f.zarr' already exists" in line and "--overwrite" in line and "npz file" not in line


def _loop_stores(tmp_path, digits):
    _, feats, y = digits
    kw = {"classes": [str(c) for c in range(10)]}
    write_pool(tmp_path / "lab.zarr", feats[:200], y=y[:200], **kw)
    write_pool(tmp_path / "test.zarr", feats[200:400], y=y[200:400], **kw)
    write_pool(tmp_path / "pool.zarr", feats[400:900], y=np.full(500, -1), hidden={"y": y[400:900]}, **kw)


def test_loop_without_val_holds_out_and_resumes_from_another_directory(tmp_path, digits):
    _loop_stores(tmp_path, digits)
    args = ["loop", "--pool", "pool.zarr", "--labeled", "lab.zarr", "--test", "test.zarr", "--rounds", 2, "--budget", 5,
            "--workdir", "run", "--oracle", "external", "-q", "--json"]
    r = run(args, tmp_path, cwd=tmp_path)  # relative paths
    assert r.exit_code == 0, r.output
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["config"]["val"] is None and Path(state["config"]["pool"]).is_absolute()
    to_label = list(csv.DictReader(open(tmp_path / "run" / "round-0" / "to_label.csv")))
    assert len(to_label) == 5
    hidden = dict(zip(open_pool(tmp_path / "pool.zarr").ids(), open_pool(tmp_path / "pool.zarr").hidden("y")))
    labels = tmp_path / "labels.csv"
    labels.write_text("\ufeffid,label\n" + "".join(f"{row['id']},{hidden[row['id']]}\n" for row in to_label))  # Excel's BOM
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = run(["label", tmp_path / "run", "--import", labels, "-q", "--json"], tmp_path, cwd=other)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_added"] == 5 and json.loads(r.stdout)["round"] == 1


def test_loop_errors_name_ads_loop(tmp_path, digits):
    _loop_stores(tmp_path, digits)
    base = ["loop", "--pool", tmp_path / "pool.zarr", "--labeled", tmp_path / "lab.zarr", "--rounds", 1,
            "--workdir", tmp_path / "r"]
    assert "The 'budget' parameter of ads loop must be an int >= 1. Got 0." in _error_line(run(base + ["--budget", 0], tmp_path))
    line = _error_line(run(base + ["--budget", "ten"], tmp_path))
    assert line.startswith("ads: error: ads loop: ") and "'ten' is not a valid integer" in line
    assert not (tmp_path / "r").exists()


def test_to_label_writes_the_images(tmp_path, digits):
    from PIL import Image

    images, _, y = digits
    kw = {"classes": [str(c) for c in range(10)]}
    write_pool(tmp_path / "lab.zarr", images[:200], y=y[:200], **kw)
    write_pool(tmp_path / "val.zarr", images[200:300], y=y[200:300], **kw)
    write_pool(tmp_path / "pool.zarr", images[300:500], ids=[f"img/{i}" for i in range(200)], **kw)
    r = run(["loop", "--pool", tmp_path / "pool.zarr", "--labeled", tmp_path / "lab.zarr", "--val", tmp_path / "val.zarr",
             "--rounds", 1, "--budget", 4, "--epochs", 2, "--workdir", tmp_path / "run", "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "run" / "round-0" / "to_label.csv")))
    assert len(rows) == 4 and all(row["image"].startswith("images/img_") for row in rows)
    ids = open_pool(tmp_path / "pool.zarr").ids().tolist()
    for row in rows:
        img = np.asarray(Image.open(tmp_path / "run" / "round-0" / row["image"]))
        np.testing.assert_array_equal(img, images[300 + ids.index(row["id"])])


def test_report_without_matplotlib_prints_the_table_then_one_line(tmp_path, digits, monkeypatch):
    _loop_stores(tmp_path, digits)
    r = run(["loop", "--pool", tmp_path / "pool.zarr", "--labeled", tmp_path / "lab.zarr", "--rounds", 1, "--budget", 5,
             "--workdir", tmp_path / "run", "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    r = run(["report", tmp_path / "run", "--out", tmp_path / "rep.png"])
    assert "labeled" in r.stdout and len(r.stdout.strip().splitlines()) == 3
    assert "needs matplotlib: pip install 'ads[plot]'" in _error_line(r)
    assert not (tmp_path / "rep.png").exists()


@pytest.mark.network
def test_demo_runs_the_main_job(tmp_path):
    from ads.datasets import make_mnist

    make_mnist(tmp_path / "d", labeled=200, val=100, pool=1000, test=50, seed=0)  # small stores: demo reuses them
    r = run(["demo", "--dir", tmp_path / "d", "--budget", 20], tmp_path)
    assert r.exit_code == 0, r.output
    assert "validation accuracy of the network" in r.stdout and "candidates                          1000" in r.stdout
    assert len((tmp_path / "d" / "selection.csv").read_text().splitlines()) == 21


@pytest.mark.parametrize("args,command", [
    (["pool", "info", "missing.zarr"], "ads pool info"),
    (["pool", "create", "o.zarr", "--from-npz", "missing.npz"], "ads pool create"),
    (["select", "--pool", "missing.zarr", "--labeled", "l.zarr", "--budget", "5"], "ads select"),
    (["score", "--pool", "missing.zarr", "--labeled", "l.zarr", "--out", "s.csv"], "ads score"),
    (["value", "--labeled", "missing.zarr", "--out", "v.csv"], "ads value"),
    (["loop", "--pool", "missing.zarr", "--labeled", "l.zarr", "--rounds", "1", "--budget", "1", "--workdir", "r"], "ads loop"),
    (["label", "norun", "--import", "l.csv"], "ads label"),
    (["report", "norun"], "ads report"),
    (["data", "mnist", "d", "--labeled", "0"], "ads data mnist"),
])
def test_every_error_line_names_its_command(tmp_path, args, command):
    line = _error_line(run(args, tmp_path, cwd=tmp_path))
    assert line.startswith(f"ads: error: {command}") or f"of {command}" in line, line
