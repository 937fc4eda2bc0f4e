"""Bounded load test of ``ads serve`` (issue 12): loopback only, stops by itself.

50 concurrent clients poll the running job's status and post labels for 60 s while
selections run one after another on a real MNIST run (pool 20,000, CNN trained every
round). Each client labels its own share of the offered items (one label per request, a
second post of the same label now and then, which must be a no-op). At the end a last
selection commits everything, and the run state is checked against every acknowledged
label: none lost, none duplicated, none changed.

    python3 benchmarks/serve_load.py [--clients 50] [--seconds 60] [--out benchmarks/results/serve_load]

Writes ``OUT.json`` and ``OUT.md`` (requests/s, latency percentiles per request kind,
labels acknowledged / committed / lost / duplicated).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "load-test-token"
H = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        for attempt in (0, 1):  # one reconnect if the server closed a kept-alive connection
            try:
                self.conn.request(method, path, body=data, headers=H)
                r = self.conn.getresponse()
                return r.status, json.loads(r.read() or b"null")
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def wait_job(c: Client, job: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = c.call("GET", f"/v1/jobs/{job}")[1]
        if st["state"] not in ("queued", "running"):
            return st
        time.sleep(0.2)
    raise TimeoutError(f"job {job} still running after {timeout} s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--first-batch", type=int, default=3000, help="items offered for labeling before the load starts")
    ap.add_argument("--budget", type=int, default=500, help="budget of the selections that run during the load")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load")
    args = ap.parse_args(argv)
    if not (1 <= args.clients <= 200 and 1 <= args.seconds <= 600):
        ap.error("--clients must be in 1..200 and --seconds in 1..600 (the test is bounded)")

    from ads.datasets import make_mnist
    from ads.pool import open_pool

    tmp = Path(tempfile.mkdtemp(prefix="ads-serve-load-"))
    paths = make_mnist(tmp / "mnist", labeled=1000, val=500, pool=args.pool, test=1000)
    pool = open_pool(paths["pool"])
    classes = list(open_pool(paths["labeled"]).classes)
    truth = {str(i): classes[int(y)] for i, y in zip(pool.ids(), pool.hidden("y"))}
    port = free_port()
    env = {**os.environ, "ADS_API_TOKEN": TOKEN, "ADS_CACHE": str(tmp / "cache")}
    log = open(tmp / "serve.log", "wb")
    server = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "serve", str(tmp / "run"),
                               "--pool", str(paths["pool"]), "--labeled", str(paths["labeled"]), "--val", str(paths["val"]),
                               "--budget", str(args.budget), "--port", str(port), "--threads", "32"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        c = Client(port)
        deadline = time.monotonic() + 60
        while True:
            try:
                if c.call("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("server did not start:\n" + (tmp / "serve.log").read_text()[-2000:])
            time.sleep(0.3)
        c = Client(port)
        job = c.call("POST", "/v1/select", {"budget": args.first_batch})[1]["job"]
        assert wait_job(c, job)["state"] == "succeeded"
        offered = [p["id"] for p in c.call("GET", f"/v1/jobs/{job}/result")[1]["picked"]]
        # The next selection starts at once (as on START_TRAINING): round 0's batch stays open
        # for late labels, which the selection after it commits.
        current = {"job": c.call("POST", "/v1/select", {"budget": args.budget})[1]["job"]}
        shares = [offered[k::args.clients] for k in range(args.clients)]
        lat = {"poll": [], "label": []}
        acked: dict[str, str] = {}
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds
        rounds = {"started": 1, "succeeded": 0}

        def client(k):
            cl = Client(port)
            mine, n, local = shares[k], 0, {"poll": [], "label": []}
            rng = np.random.default_rng(k)
            while time.monotonic() < stop_at:
                t = time.perf_counter()
                status, body = cl.call("GET", f"/v1/jobs/{current['job']}")
                local["poll"].append(time.perf_counter() - t)
                if status != 200:
                    errors.append(f"poll {status} {body}")
                if n < len(mine) or mine:
                    if n < len(mine):
                        pid = mine[n]
                        n += 1
                    else:  # all mine are labeled: post one again (must be a no-op)
                        pid = mine[int(rng.integers(len(mine)))]
                    t = time.perf_counter()
                    status, body = cl.call("POST", "/v1/labels", {"labels": [{"id": pid, "label": truth[pid]}]})
                    local["label"].append(time.perf_counter() - t)
                    if status == 200:
                        with lock:
                            acked[pid] = truth[pid]
                    else:
                        errors.append(f"label {status} {body}")
            with lock:
                for key in lat:
                    lat[key].extend(local[key])

        def controller():
            cl = Client(port)
            while time.monotonic() < stop_at:
                st = cl.call("GET", f"/v1/jobs/{current['job']}")[1]
                if st["state"] not in ("queued", "running"):
                    rounds["succeeded"] += st["state"] == "succeeded"
                    if st["state"] == "failed":
                        errors.append(f"job failed: {st['error']}")
                    status, body = cl.call("POST", "/v1/select", {"budget": args.budget})
                    if status == 202:
                        current["job"] = body["job"]
                        rounds["started"] += 1
                time.sleep(0.5)

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.clients)]
        threads.append(threading.Thread(target=controller, daemon=True))
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.seconds + 60)
        wall = time.monotonic() - t0
        hung = sum(t.is_alive() for t in threads)
        # Commit everything: wait for the running selection, then one more.
        wait_job(c, current["job"])
        job = c.call("POST", "/v1/select", {"budget": args.budget})[1]["job"]
        final = wait_job(c, job)
        state = json.loads((tmp / "run" / "state.json").read_text())
        added = [(a[0], a[1]) for a in state["added"]]
        ids_added = [a[0] for a in added]
        want = {p: classes.index(lab) for p, lab in acked.items()}
        got = dict(added)
        lost = sorted(set(want) - set(got))
        duplicated = len(ids_added) - len(set(ids_added))
        changed = sorted(p for p in want if p in got and got[p] != want[p])
        extra = sorted(set(got) - set(want))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    n_req = sum(len(v) for v in lat.values())

    def pct(v, q):
        return round(1000 * float(np.percentile(v, q)), 2) if v else None

    res = {"clients": args.clients, "seconds": round(wall, 1), "pool": args.pool, "first_batch": args.first_batch,
           "budget": args.budget, "requests": n_req, "requests_per_s": round(n_req / wall, 1),
           "latency_ms": {k: {"p50": pct(v, 50), "p95": pct(v, 95), "p99": pct(v, 99), "max": pct(v, 100), "n": len(v)}
                          for k, v in lat.items()},
           "latency_ms_all": {"p50": pct(lat["poll"] + lat["label"], 50), "p99": pct(lat["poll"] + lat["label"], 99)},
           "selections": {"started_during_load": rounds["started"], "succeeded_during_load": rounds["succeeded"],
                          "final": final["state"]},
           "labels": {"acknowledged": len(acked), "committed": len(added), "lost": len(lost), "duplicated": duplicated,
                      "changed": len(changed), "committed_without_ack": len(extra)},
           "errors": errors[:20], "n_errors": len(errors), "hung_threads": hung, "cpus": os.cpu_count(),
           "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    md = [f"# ads serve load test ({args.clients} clients, {wall:.0f} s, loopback)", "",
          f"Run: MNIST pool {args.pool}, {args.first_batch} items offered first, selections of {args.budget} running "
          f"back to back during the load ({rounds['started']} started, {rounds['succeeded']} finished); "
          f"{os.cpu_count()} CPUs, load average at the end {res['load_average_at_end']}.", "",
          "| requests | requests/s | kind | n | p50 ms | p95 ms | p99 ms | max ms |", "|---|---|---|---|---|---|---|---|"]
    for k, v in res["latency_ms"].items():
        md.append(f"| {n_req} | {res['requests_per_s']} | {k} | {v['n']} | {v['p50']} | {v['p95']} | {v['p99']} | {v['max']} |")
    lab = res["labels"]
    md += ["", f"Labels: {lab['acknowledged']} acknowledged, {lab['committed']} committed, **{lab['lost']} lost, "
           f"{lab['duplicated']} duplicated**, {lab['changed']} changed, {lab['committed_without_ack']} committed without an "
           f"acknowledgement. Errors: {len(errors)}. Threads still running at the end: {hung}.", ""]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    ok = not lost and not duplicated and not changed and not extra and not errors and not hung
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
