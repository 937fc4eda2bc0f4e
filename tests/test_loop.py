"""The labeling loop: records, resume after a real kill, external labels, report."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ads import loop as L
from ads.errors import DataError, ParameterError
from ads.pool import open_pool, write_pool


@pytest.fixture()
def stores(tmp_path, digits):
    """optdigits features: labeled 100, val 150, test 200, pool 1000 with source tags."""
    _, feats, y = digits
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    parts = {"labeled": perm[:100], "val": perm[100:250], "test": perm[250:450], "pool": perm[450:1450]}
    classes = [str(c) for c in range(10)]
    out = {}
    for name, idx in parts.items():
        kw = dict(ids=[f"d{i}" for i in idx], classes=classes)
        if name == "pool":
            src = np.where(np.arange(idx.size) % 5 == 0, "noisy", "clean")
            out[name] = write_pool(tmp_path / f"{name}.zarr", feats[idx], y=np.full(idx.size, -1),
                                   hidden={"y": y[idx], "source": src}, **kw)
        else:
            out[name] = write_pool(tmp_path / f"{name}.zarr", feats[idx], y=y[idx], **kw)
    return {k: str(v) for k, v in out.items()}


def _config(stores, dvrl_iterations=None, **kw):
    base = dict(pool=stores["pool"], labeled=stores["labeled"], val=stores["val"], test=stores["test"], rounds=3,
                budget=10, strategy="coreset", fraction=0.2, seed=0)
    base.update(kw)
    if dvrl_iterations is not None:
        base["scorer_params"] = {"iterations": dvrl_iterations}
    return L.LoopConfig(**base)


def _resume(workdir, **kw):
    """The loop with the parts its configuration names, built as the CLI builds them."""
    from cli import resume_run

    return resume_run(workdir, **kw)


def test_loop_records_and_no_double_labeling(tmp_path, stores):
    run = L.start(_config(stores), tmp_path / "run")
    state = _resume(run.dir, progress=False)
    recs = L.read_rounds(run.dir)
    assert [r["round"] for r in recs] == [0, 1, 2, 3]
    assert [r["n_labeled"] for r in recs] == [100, 110, 120, 130]
    picked = [p for r in recs for p in r["picked"]]
    assert len(picked) == 30 == len(set(picked)) and recs[-1]["picked"] == []
    assert all(0.5 < r["test_accuracy"] <= 1 for r in recs)
    assert set(recs[0]["seconds"]) >= {"train_embed", "value", "score", "strategy", "label"}
    assert sum(recs[0]["sources"].values()) == 10
    # the oracle's labels are the hidden ones
    pool = open_pool(stores["pool"])
    hidden = dict(zip(pool.ids(), pool.hidden("y")))
    assert all(lab == hidden[pid] for pid, lab, _ in state["added"])
    with pytest.raises(ParameterError, match=r"a run is in progress there; pass --resume"):
        L.start(_config(stores), run.dir)


def _cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "cli", *map(str, args)], capture_output=True, text=True, **kw)


def test_resume_after_real_kill_matches_uninterrupted_run(tmp_path, stores):
    rounds, budget = 10, 10
    common = ["--pool", stores["pool"], "--labeled", stores["labeled"], "--val", stores["val"], "--rounds", rounds,
              "--budget", budget, "--fraction", 0.2, "-q"]
    ref = _cli(["loop", "--workdir", tmp_path / "ref", *common])
    assert ref.returncode == 0, ref.stderr
    want = json.loads((tmp_path / "ref" / "state.json").read_text())["added"]

    work = tmp_path / "killed"
    kills = 0
    proc = subprocess.Popen([sys.executable, "-m", "cli", "loop", "--workdir", str(work), *map(str, common)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []
    for target in (2, 5):  # kill once the loop reaches these rounds, then resume
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                st = json.loads((work / "state.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                st = None  # never half-written: the JSON error cannot happen with atomic writes
            if st and st["round"] >= target:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the loop ended before it could be killed"
        time.sleep(0.05 * target)  # land somewhere inside the round
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        seen.append(json.loads((work / "state.json").read_text())["stage"])
        proc = subprocess.Popen([sys.executable, "-m", "cli", "loop", "--workdir", str(work), "--resume", "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.wait(timeout=300) == 0
    got = json.loads((work / "state.json").read_text())
    assert kills == 2 and got["stage"] == "done"
    ids = [a[0] for a in got["added"]]
    assert len(ids) == len(set(ids)) == rounds * budget
    assert got["added"] == want  # same picks and labels as the uninterrupted run
    assert [json.loads(x)["round"] for x in (work / "rounds.jsonl").read_text().splitlines()] == list(range(rounds + 1))


def test_external_oracle_and_label_import(tmp_path, stores):
    run = L.start(_config(stores, oracle="external", rounds=2), tmp_path / "ext")
    state = _resume(run.dir, progress=False)
    assert state["stage"] == "label"
    to_label = (run.dir / "round-0" / "to_label.csv").read_text().split()[1:]
    assert len(to_label) == 10
    pool = open_pool(stores["pool"])
    hidden = dict(zip(pool.ids(), pool.hidden("y")))
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\n" + "\n".join(f"{i},{hidden[i]}" for i in to_label[:-1]) + "\n")
    with pytest.raises(DataError, match=r"lacks 1 of the batch's ids"):
        L.import_labels(run.dir, bad)
    bad.write_text("id,label\n" + "\n".join(f"{i},{'zebra' if n == 3 else hidden[i]}" for n, i in enumerate(to_label)) + "\n")
    with pytest.raises(DataError, match=r"line 5: label 'zebra' is not a class name, an index 0..9 or 'reject'"):
        L.import_labels(run.dir, bad)
    assert L.Run(run.dir).load()["added"] == []  # failed imports change nothing
    good = tmp_path / "good.csv"
    good.write_text("id,label\n" + "\n".join(f"{i},{hidden[i]}" for i in to_label) + "\n")
    r = _cli(["label", run.dir, "--import", good, "--no-continue", "-q"])
    assert r.returncode == 0, r.stderr
    state = _resume(run.dir, progress=False)  # continues to round 1, waits again
    assert state["round"] == 1 and state["stage"] == "label"
    # the same run with the hidden oracle picks the same first batch
    hid = L.start(_config(stores, rounds=2), tmp_path / "hid")
    _resume(hid.dir, progress=False, max_rounds=1)
    assert [a[0] for a in L.Run(hid.dir).load()["added"]] == to_label


def test_report_table_and_figure(tmp_path, stores):
    run = L.start(_config(stores, rounds=2), tmp_path / "r1")
    _resume(run.dir, progress=False)
    r = _cli(["report", run.dir, "--out", tmp_path / "rep.png"])
    assert r.returncode == 0, r.stderr
    assert "labeled" in r.stdout and len(r.stdout.strip().splitlines()) == 4
    assert (tmp_path / "rep.png").stat().st_size > 10_000
    bad = _cli(["report", tmp_path / "nope"])
    assert bad.returncode == 2 and "has no rounds.jsonl" in bad.stderr


def test_loop_with_dvrl_scorer(tmp_path, stores):
    run = L.start(_config(stores, rounds=1, scorer="dvrl", dvrl_iterations=10), tmp_path / "dv")
    _resume(run.dir, progress=False)
    recs = L.read_rounds(run.dir)
    assert len(recs[0]["picked"]) == 10 and recs[0]["seconds"]["value"] > 0
    with pytest.raises(ParameterError, match=r"Unknown scorer 'shap'. Valid scorers: direct, dvrl, knn-shapley"):
        L.start(_config(stores, scorer="shap"), tmp_path / "bad")
