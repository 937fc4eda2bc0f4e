"""`ads serve` (issue 12): the REST API and the Label Studio ML backend face, through Flask's
test client and through a real server (waitress) on a loopback port; the session's label
ledger; restart after kill -9 with nothing lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import cli
import strategies
from ads.errors import DataError
from ads.pool import open_pool
from ads.serve import Service, create_app
from ads.session import Session

pytest.importorskip("flask")
pytest.importorskip("waitress")

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Gate:
    """A strategy that waits for the test before picking (to hold a job in 'strategy')."""

    def __init__(self):
        self.inner = strategies.get("coreset")
        self.entered = threading.Event()
        self.release = threading.Event()

    def select(self, *a, **kw):
        self.entered.set()
        assert self.release.wait(30)
        return self.inner.select(*a, **kw)


def _session(tmp_path, stores, budget=20):
    return Session.open(tmp_path / "run", pool=stores["pool"], labeled=stores["labeled"],
                        val=stores["val"], budget=budget)


@pytest.fixture()
def served(tmp_path, feature_stores):
    """(service, test client, gate) over a fresh run of the optdigits feature stores."""
    gate = Gate()
    gate.release.set()
    session = _session(tmp_path, feature_stores)

    def parts(name, config):
        return (gate if name is None else strategies.get(name)), cli.build_scorer(config["scorer"], config["scorer_params"])

    service = Service(session, parts, token=TOKEN)
    client = create_app(service, max_body=4096).test_client()
    yield service, client, gate
    gate.release.set()
    service.stop()


def _wait(client, job, until=("succeeded", "failed", "cancelled"), timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/jobs/{job}", headers=AUTH)
        assert r.status_code == 200, r.get_json()
        if r.get_json()["state"] in until:
            return r.get_json()
        time.sleep(0.05)
    raise AssertionError(f"job {job} still {r.get_json()}")


def _hidden(stores):
    pool = open_pool(stores["pool"])
    return {str(i): int(y) for i, y in zip(pool.ids(), pool.hidden("y"))}


def _error(r, status):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    body = r.get_json()
    assert set(body) == {"error"} and body["error"] and "Traceback" not in body["error"]
    return body["error"]


# ---------------------------------------------------------------- test client
def test_auth_required_on_every_v1_call(served):
    _, client, _ = served
    for method, path in (("get", "/v1/state"), ("post", "/v1/select"), ("post", "/v1/labels"), ("get", "/v1/jobs/x"),
                         ("delete", "/v1/jobs/x"), ("get", "/v1/jobs/x/result")):
        _error(getattr(client, method)(path), 401)
        _error(getattr(client, method)(path, headers={"Authorization": "Bearer wrong"}), 401)
    assert client.get("/v1/state", headers=AUTH).status_code == 200
    assert client.get("/health").get_json()["status"] == "UP"  # Label Studio's health check carries no auth
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and "/v1/select" in spec["paths"]


def test_bad_requests_are_4xx_json(served):
    _, client, _ = served
    assert "JSON object" in _error(client.post("/v1/select", data="{bad", headers=AUTH), 400)
    _error(client.post("/v1/select", data="[1, 2]", headers=AUTH), 400)
    assert "unknown fields" in _error(client.post("/v1/select", json={"budgett": 3}, headers=AUTH), 400)
    assert "'budget'" in _error(client.post("/v1/select", json={"budget": "ten"}, headers=AUTH), 400)
    assert "'budget'" in _error(client.post("/v1/select", json={"budget": 0}, headers=AUTH), 400)
    assert "Unknown strategy" in _error(client.post("/v1/select", json={"strategy": "nope"}, headers=AUTH), 400)
    assert "'labels'" in _error(client.post("/v1/labels", json={"labels": []}, headers=AUTH), 400)
    _error(client.post("/v1/labels", json={"labels": [{"id": 3}]}, headers=AUTH), 400)
    _error(client.post("/predict", json={"tasks": "x"}, headers=AUTH), 400)
    _error(client.post("/webhook", json={"no": "action"}, headers=AUTH), 400)
    _error(client.get("/v1/jobs/nope", headers=AUTH), 404)
    _error(client.get("/v1/nope", headers=AUTH), 404)
    _error(client.put("/v1/select", headers=AUTH), 405)
    assert "exceeds" in _error(client.post("/v1/labels", data=b"{" + b" " * 10000 + b"}", headers=AUTH), 413)


def test_job_lifecycle_labels_and_next_round(served, feature_stores):
    service, client, gate = served
    gate.release.clear()
    r = client.post("/v1/select", json={"budget": 12}, headers=AUTH)
    assert r.status_code == 202
    job = r.get_json()["job"]
    assert gate.entered.wait(60)
    st = client.get(f"/v1/jobs/{job}", headers=AUTH).get_json()
    assert st["state"] == "running" and st["stage"] == "strategy"
    assert "one selection" in _error(client.post("/v1/select", json={}, headers=AUTH), 409)
    assert "running" in _error(client.get(f"/v1/jobs/{job}/result", headers=AUTH), 409)
    gate.release.set()
    assert _wait(client, job)["state"] == "succeeded"
    picked = client.get(f"/v1/jobs/{job}/result", headers=AUTH).get_json()["picked"]
    ids = [p["id"] for p in picked]
    assert len(ids) == len(set(ids)) == 12 and all(isinstance(p["score"], float) for p in picked)
    state = client.get("/v1/state", headers=AUTH).get_json()
    assert state["batch"] == ids and state["round"] == 0 and state["job"] is None

    # The ML backend: scores follow the pick order; unknown items come last.
    tasks = [{"data": {"ads_id": i}} for i in reversed(ids)] + [{"data": {"ads_id": "not-picked"}}, {"data": {}}]
    res = client.post("/predict", json={"tasks": tasks}, headers=AUTH).get_json()["results"]
    assert [r["score"] for r in res[:12]] == [i / 12 for i in reversed(range(12))]
    assert res[12]["score"] >= 1 and res[13]["score"] >= 1 and res[0]["model_version"] == "round-0"
    assert client.post("/setup", json={"project": "1.1700000000"}, headers=AUTH).get_json() == {"model_version": "round-0"}

    # Labels: a class name, an index (int and digits), reject; same label again is a no-op.
    hidden = _hidden(feature_stores)
    labels = [{"id": ids[0], "label": str(hidden[ids[0]])}, {"id": ids[1], "label": hidden[ids[1]]},
              {"id": ids[2], "label": "reject"}]
    out = client.post("/v1/labels", json={"labels": labels}, headers=AUTH).get_json()
    assert out["accepted"] == 3 and out["batch_labeled"] == 3
    assert client.post("/v1/labels", json={"labels": labels[:1]}, headers=AUTH).get_json()["unchanged"] == 1
    assert "not offered" in _error(client.post("/v1/labels", json={"labels": [{"id": "d0x", "label": "1"}]}, headers=AUTH), 400)
    assert "not a class" in _error(client.post("/v1/labels", json={"labels": [{"id": ids[3], "label": "cat"}]}, headers=AUTH), 400)
    state = client.get("/v1/state", headers=AUTH).get_json()
    assert (state["labeled"], state["rejected"], state["pending"], state["committed"]) == (2, 1, 3, 0)

    # The next selection commits them; the new batch excludes every labeled item.
    job2 = client.post("/v1/select", json={"budget": 10, "strategy": "random", "seed": 3}, headers=AUTH).get_json()["job"]
    assert _wait(client, job2)["state"] == "succeeded"
    ids2 = [p["id"] for p in client.get(f"/v1/jobs/{job2}/result", headers=AUTH).get_json()["picked"]]
    assert len(ids2) == 10 and not set(ids2) & set(ids[:3])
    state = service.session.run.load()
    assert state["round"] == 1 and sorted(a[0] for a in state["added"]) == sorted(ids[:3])
    assert [a[1] for a in state["added"] if a[0] == ids[2]] == [-1]
    assert "committed" in _error(client.post("/v1/labels", json={"labels": [
        {"id": ids[0], "label": (hidden[ids[0]] + 1) % 10}]}, headers=AUTH), 409)
    # a late label for an item of round 0's batch is still taken (committed with the next round)
    late = next(i for i in ids[3:] if i not in ids2)
    assert client.post("/v1/labels", json={"labels": [{"id": late, "label": "3"}]}, headers=AUTH).status_code == 200


def test_cancel_running_and_queued(served):
    service, client, gate = served
    gate.release.clear()
    job = client.post("/v1/select", json={"budget": 5}, headers=AUTH).get_json()["job"]
    assert gate.entered.wait(60)
    r = client.delete(f"/v1/jobs/{job}", headers=AUTH)
    assert r.status_code == 202 and r.get_json()["cancel_requested"] is True
    gate.release.set()
    final = _wait(client, job)
    assert final["state"] == "cancelled" and "cancelled" in final["error"]
    assert service.session.run.load()["stage"] == "select"  # nothing half-done: no batch
    job2 = client.post("/v1/select", json={"budget": 5}, headers=AUTH).get_json()["job"]
    assert _wait(client, job2)["state"] == "succeeded"


def test_webhook_queues_start_training(tmp_path, feature_stores):
    session = _session(tmp_path, feature_stores)
    service = Service(session, lambda name, c: (strategies.get(name or "coreset"), cli.build_scorer(c["scorer"], c["scorer_params"])))
    client = create_app(service).test_client()
    try:
        assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}).get_json() == {"status": "queued"}
        assert client.post("/v1/labels", json={"labels": [{"id": "x", "label": "1"}]}).status_code == 400  # no token: open
    finally:
        service.stop()


# ---------------------------------------------------------------- the session's ledger
def test_ledger_survives_a_torn_line(tmp_path, feature_stores):
    s = _session(tmp_path, feature_stores, budget=6)
    ids = [p["id"] for p in s.select(6, strategy=strategies.get("random"))["picked"]]
    s.add_labels({ids[0]: "1"})
    with open(s.ledger_path, "a") as f:
        f.write('{"t": 1, "labels": {"' + ids[1])  # a writer killed mid-line: never acknowledged
    s.add_labels({ids[2]: "reject"})
    fresh = Session(tmp_path / "run")
    assert fresh.pending() == {ids[0]: 1, ids[2]: -1}
    with pytest.raises(DataError, match="twice"):
        fresh.add_labels([{"id": ids[3], "label": "1"}, {"id": ids[3], "label": "2"}])


# ---------------------------------------------------------------- a real server on a loopback port
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method, url, body=None, token=TOKEN, timeout=10):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Server:
    def __init__(self, args, tmp_path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ADS_API_TOKEN": TOKEN, "ADS_CACHE": str(tmp_path / "cache")}
        self.log = open(tmp_path / f"serve-{self.port}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "serve", *map(str, args),
                                      "--port", str(self.port)], cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if _http("GET", self.url + "/health", timeout=1)[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(Path(self.log.name).read_text())

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.log.close()


def test_real_server_restart_after_kill_loses_nothing(tmp_path, feature_stores):
    run = tmp_path / "run"
    args = [run, "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"],
            "--val", feature_stores["val"], "--budget", 15]
    srv = Server(args, tmp_path)
    try:
        assert _http("GET", srv.url + "/v1/state", token=None)[0] == 401
        assert _http("POST", srv.url + "/v1/labels", b"{nope")[0] == 400
        code, body = _http("POST", srv.url + "/v1/labels", b'{"labels": "' + b"x" * (5 << 20) + b'"}')
        assert code == 413 and "error" in body
        code, body = _http("POST", srv.url + "/v1/select", {})
        assert code == 202
        job = body["job"]
        deadline = time.monotonic() + 60
        while _http("GET", f"{srv.url}/v1/jobs/{job}")[1]["state"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ids = [p["id"] for p in _http("GET", f"{srv.url}/v1/jobs/{job}/result")[1]["picked"]]
        hidden = _hidden(feature_stores)
        acked = {}
        for i in ids[:10]:  # one request per label, as annotators submit
            code, body = _http("POST", srv.url + "/v1/labels", {"labels": [{"id": i, "label": hidden[i]}]})
            assert code == 200 and body["accepted"] == 1
            acked[i] = hidden[i]
        code, body = _http("POST", srv.url + "/v1/select", {"budget": 15})  # commits the 10, then runs
        assert code == 202
        job2 = body["job"]
        while _http("GET", f"{srv.url}/v1/jobs/{job2}")[1]["state"] == "queued":
            time.sleep(0.02)
    finally:
        srv.stop(signal.SIGKILL)  # mid-job (or just after): the kernel drops the run's lock
    srv = Server([run], tmp_path)  # reopened from the run directory alone
    try:
        deadline = time.monotonic() + 90
        while (j := _http("GET", f"{srv.url}/v1/jobs/{job2}")[1])["state"] != "succeeded":
            assert j["state"] in ("queued", "running") and time.monotonic() < deadline, j
            time.sleep(0.1)
        state = _http("GET", srv.url + "/v1/state")[1]
        assert state["round"] == 1 and state["labeled"] == 10 and state["pending"] == 0
        added = json.loads((run / "state.json").read_text())["added"]
        assert sorted((a[0], a[1]) for a in added) == sorted(acked.items())  # every label once, none lost
        ids2 = [p["id"] for p in _http("GET", f"{srv.url}/v1/jobs/{job2}/result")[1]["picked"]]
        assert len(ids2) == 15 and not set(ids2) & set(acked)
    finally:
        srv.stop()
    assert srv.proc.returncode is not None


# ---------------------------------------------------------------- the command's arguments
def _cli(args):
    @click.command()
    def entry():
        cli.main([str(a) for a in args])

    return CliRunner().invoke(entry, [], env={"ADS_API_TOKEN": ""})


@pytest.mark.parametrize("args, words", [
    (["--host", "0.0.0.0"], "not a loopback address"),
    (["--port", "70000"], "'port'"),
    ([], "has no run yet"),
])
def test_bad_arguments_one_line(tmp_path, args, words):
    r = _cli(["serve", tmp_path / "run", *args])
    lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("ads: error:")]
    assert r.exit_code == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in r.output, r.output
    assert not (tmp_path / "run").exists()
