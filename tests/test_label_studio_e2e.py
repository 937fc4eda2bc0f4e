"""End to end with a REAL Label Studio (issue 12). Opt-in: ``python3 -m pytest -m label_studio
tests/test_label_studio_e2e.py -s`` (deselected by default in pyproject's addopts).

It builds Label Studio 1.23.2 in its own virtual environment under the cache (once,
``$ADS_CACHE`` or ``~/.cache/ads``: ``label-studio-venv``; ~2 min, ~1 GB; never in ads'
environment), boots it offline on a loopback port from a copy of a migrated data directory
(made once: the first boot migrates for ~47 s), starts ``ads serve --label-studio`` on a small
real MNIST run, creates the project and connects the ML backend through label-studio-sdk,
presses "Start training", waits for the job, checks that ``/api/projects/ID/next`` serves the
tasks in ads' pick order while annotating each with its hidden true label through the SDK
(skipping one: a rejected item), and checks that the run's labeled set grew by exactly the
accepted labels and that the next round's batch excludes all of them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.label_studio, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("ADS_CACHE", Path.home() / ".cache" / "ads"))
VENV = CACHE / "label-studio-venv"
TEMPLATE = CACHE / "label-studio-data-1.23.2"
USER, PASSWORD = "ads@example.com", "ads-e2e-pass"
LS_TOKEN = "ads0e2e0token0000000000000000000000000000"
ADS_TOKEN = "ads-e2e-api-token"
BUDGET = 20
LS_ENV = {"SSRF_PROTECTION_ENABLED": "false", "ML_BLOCK_LOCAL_IP": "false", "LATEST_VERSION_CHECK": "false",
          "COLLECT_ANALYTICS": "false"}

# Runs in Label Studio's venv (the SDK lives there, not in ads' environment).
DRIVER = r'''
import json, sys, time
import requests
from label_studio_sdk import LabelStudio

cmd, url, key, arg = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
ls = LabelStudio(base_url=url, api_key=key)
H = {"Authorization": f"Token {key}"}
if cmd == "setup":
    p = ls.projects.create(title="ads e2e", label_config=arg["label_config"])
    ml = ls.ml.create(url=arg["ads_url"], project=p.id, title="ads", is_interactive=False, auth_method="BASIC_AUTH",
                      basic_auth_user="ads", basic_auth_pass=arg["ads_token"])
    r = requests.post(f"{url}/api/webhooks/", headers=H, json={
        "project": p.id, "url": arg["ads_url"] + "/webhook", "send_payload": True, "send_for_all_actions": False,
        "headers": {"Authorization": "Bearer " + arg["ads_token"]}, "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]})
    r.raise_for_status()
    print(json.dumps({"project": p.id, "ml": ml.id}))
elif cmd == "train":
    ls.ml.train(id=arg["ml"])
    print(json.dumps({"ok": True}))
elif cmd == "project":
    p = requests.get(f"{url}/api/projects/{arg['project']}", headers=H).json()
    tasks = [t for t in ls.tasks.list(project=arg["project"], fields="all")]
    print(json.dumps({"sampling": p["sampling"], "model_version": p["model_version"],
                      "tasks": [{"id": t.id, "ads_id": t.data["ads_id"], "round": t.data["ads_round"],
                                 "image": t.data["image"]} for t in tasks]}))
elif cmd == "annotate":
    served = []
    for k in range(arg["n"]):
        r = requests.get(f"{url}/api/projects/{arg['project']}/next", headers=H)
        r.raise_for_status()
        t = r.json()
        pid = t["data"]["ads_id"]
        served.append(pid)
        if pid == arg["reject"]:
            ls.annotations.create(id=t["id"], result=[], was_cancelled=True)
        else:
            ls.annotations.create(id=t["id"], result=[{"from_name": "label", "to_name": "image", "type": "choices",
                                                        "value": {"choices": [arg["truth"][pid]]}}])
    print(json.dumps({"served": served}))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, token=None, timeout=5):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def _wait_up(url, proc, log, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited:\n{Path(log).read_text()[-3000:]}")
        try:
            _get(url, timeout=2)
            return time.monotonic()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} not up after {timeout} s:\n{Path(log).read_text()[-3000:]}")


def _venv() -> Path:
    py = VENV / "bin" / "python"
    if not (VENV / "bin" / "label-studio").exists():
        print(f"building the Label Studio venv in {VENV} (once, ~2 min) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "label-studio==1.23.2", "label-studio-sdk"], check=True)
    return py


def _boot(data_dir: Path, port: int, log: Path):
    cmd = [str(VENV / "bin" / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--username", USER, "--password", PASSWORD, "--user-token", LS_TOKEN,
           "--enable-legacy-api-token"]
    return subprocess.Popen(cmd, env={**os.environ, **LS_ENV}, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _template(tmp_path) -> None:
    """A migrated data directory, made once by a first boot."""
    if (TEMPLATE / "label_studio.sqlite3").exists():
        return
    work = tmp_path / "first-boot"
    port = _free_port()
    proc = _boot(work, port, tmp_path / "ls-first-boot.log")
    try:
        t0 = time.monotonic()
        _wait_up(f"http://127.0.0.1:{port}/health", proc, tmp_path / "ls-first-boot.log", 300)
        print(f"first boot (migrations): {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        _stop(proc)
    shutil.copytree(work, TEMPLATE, dirs_exist_ok=True)


def test_label_studio_serves_the_batch_in_ads_order(tmp_path):
    py = _venv()
    _template(tmp_path)
    from ads.datasets import make_mnist
    from ads.label_studio import label_config
    from ads.pool import open_pool

    paths = make_mnist(tmp_path / "mnist", labeled=200, val=100, pool=1000, test=100)
    classes = list(open_pool(paths["labeled"]).classes)
    pool = open_pool(paths["pool"])
    truth = {str(i): classes[int(y)] for i, y in zip(pool.ids(), pool.hidden("y"))}

    data = tmp_path / "ls-data"
    shutil.copytree(TEMPLATE, data)
    ls_port, ads_port = _free_port(), _free_port()
    ls_url, ads_url = f"http://127.0.0.1:{ls_port}", f"http://127.0.0.1:{ads_port}"
    t0 = time.monotonic()
    ls = _boot(data, ls_port, tmp_path / "ls.log")
    run = tmp_path / "run"
    ads = None
    try:
        print(f"Label Studio up in {_wait_up(ls_url + '/health', ls, tmp_path / 'ls.log', 120) - t0:.1f} s "
              "(copied data dir)", flush=True)
        env = {**os.environ, "ADS_API_TOKEN": ADS_TOKEN, "LABEL_STUDIO_API_KEY": LS_TOKEN, "ADS_CACHE": str(tmp_path / "cache")}
        ads = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "serve", str(run), "--pool", str(paths["pool"]),
                                "--labeled", str(paths["labeled"]), "--val", str(paths["val"]), "--test", str(paths["test"]),
                                "--budget", str(BUDGET), "--epochs", "3", "--port", str(ads_port), "--label-studio", ls_url,
                                "--pull-interval", "2"], cwd=ROOT, env=env, stdout=open(tmp_path / "ads.log", "wb"),
                               stderr=subprocess.STDOUT)
        _wait_up(ads_url + "/health", ads, tmp_path / "ads.log", 60)

        def driver(cmd, arg):
            out = subprocess.run([str(py), "-c", DRIVER, cmd, ls_url, LS_TOKEN, json.dumps(arg)], capture_output=True,
                                 text=True, timeout=300)
            assert out.returncode == 0, out.stderr[-3000:]
            return json.loads(out.stdout.strip().splitlines()[-1])

        ids = driver("setup", {"label_config": label_config(classes), "ads_url": ads_url, "ads_token": ADS_TOKEN})
        print(f"project {ids['project']}, ML backend {ids['ml']} connected", flush=True)
        driver("train", {"ml": ids["ml"]})  # the "Start training" button
        t1 = time.monotonic()

        def wait_round(rnd, timeout=300):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                st = _get(ads_url + "/v1/state", ADS_TOKEN)
                if st["round"] == rnd and st["stage"] == "label" and st["job"] is None:
                    proj = driver("project", {"project": ids["project"]})
                    if proj["model_version"] == f"round-{rnd}":
                        return st, proj
                time.sleep(1)
            raise AssertionError(f"round {rnd} not served: {st}\n{(tmp_path / 'ads.log').read_text()[-3000:]}")

        st, proj = wait_round(0)
        picked = st["batch"]
        print(f"round 0: job done and pushed in {time.monotonic() - t1:.1f} s; {len(proj['tasks'])} tasks, "
              f"sampling {proj['sampling']!r}, model_version {proj['model_version']!r}", flush=True)
        assert len(picked) == BUDGET and proj["sampling"] == "Uncertainty sampling"
        assert sorted(t["ads_id"] for t in proj["tasks"]) == sorted(picked)
        img = proj["tasks"][0]["image"]
        with urllib.request.urlopen(img, timeout=5) as r:  # the signed image URL serves the PNG
            assert r.headers["Content-Type"] == "image/png" and r.read()[:4] == b"\x89PNG"

        rejected = picked[5]
        served = driver("annotate", {"project": ids["project"], "n": BUDGET, "reject": rejected, "truth": truth})["served"]
        print(f"/next served the {len(served)} tasks in ads' pick order: {served == picked}", flush=True)
        assert served == picked

        st1, proj1 = wait_round(1)
        state = json.loads((run / "state.json").read_text())
        added = {a[0]: a[1] for a in state["added"]}
        accepted = {p: classes.index(truth[p]) for p in picked if p != rejected}
        assert len(state["added"]) == BUDGET and added[rejected] == -1
        assert {p: lab for p, lab in added.items() if lab >= 0} == accepted
        n_labeled = [r["n_labeled"] for r in state["records"]]
        rec1 = state["pending"]
        print(f"labeled set: {n_labeled[0]} -> {rec1['n_labeled']} (+{len(accepted)} accepted, 1 rejected)", flush=True)
        assert rec1["n_labeled"] == n_labeled[0] + len(accepted)
        assert not set(st1["batch"]) & set(picked)
        assert len([t for t in proj1["tasks"] if t["round"] == 1]) == BUDGET
        print(f"round 1: {len(st1['batch'])} new picks, none labeled before; project model_version "
              f"{proj1['model_version']!r}; {len(proj1['tasks'])} tasks in all", flush=True)
    finally:
        if ads is not None and ads.poll() is None:
            ads.send_signal(signal.SIGTERM)
            ads.wait(30)
        _stop(ls)
    assert np.isfinite(t0)
