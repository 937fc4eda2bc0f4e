"""``ads serve``: the selection service a labeling team runs next to its labeling tool.

One run directory per server (the loop's, see :mod:`ads.loop`; opened through
:class:`ads.session.Session`), two faces on one Flask app served by waitress:

- a **Label Studio ML backend** (``/health``, ``/setup``, ``/predict``, ``/webhook``,
  ``/versions``, ``/train``): every answer comes from stored state (no computation in a
  request); ``/predict`` scores a task by its item's pick rank / batch size (so Label
  Studio's uncertainty sampling serves the batch in pick order), 1 + that for earlier
  batches, 2 for items never picked;
- a **native REST API** under ``/v1`` (bearer token): selection jobs, labels, state, and
  the OpenAPI description at ``/openapi.json``.

Selections run in one worker thread, one at a time, never in a request thread. Jobs are
files ``RUN/serve/jobs/ID.json`` replaced atomically at every stage; labels are
acknowledged only once they are in the session's fsync'ed ledger. A server killed at any
moment restarts with every acknowledged label, and a job that was running is either found
finished (its batch is in the run state) or queued again.

The parts (strategy, scorer) are built at the edge: the caller passes ``build_parts``;
this module never imports the ``strategies`` package.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import queue
import secrets
import threading
import time
import uuid

from ads._io import atomic_write_text
from ads.errors import AdsError, DataError, LockError, ParameterError
from ads.session import STAGES, Cancelled, LabelConflict, Session

logger = logging.getLogger(__name__)

SERVE_DIR = "serve"
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
#: Largest request body accepted (bytes) unless the server is told otherwise.
MAX_BODY = 4 * 1024 * 1024
#: Most labels in one POST /v1/labels.
MAX_LABELS = 10000


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Loopback by default; any other address only with a token."""
    if not is_loopback(host) and not token:
        raise ParameterError(f"ads serve binds {host!r}, which is not a loopback address, only with a token: set "
                             "ADS_API_TOKEN (and put a TLS reverse proxy in front).")


class Service:
    """The jobs, the worker thread and the Label Studio sync of one run directory.

    Parameters
    ----------
    session : Session
        The run.
    build_parts : callable
        ``build_parts(strategy_name, config) -> (strategy, scorer)``; unknown names raise
        :class:`ads.errors.AdsError`.
    token : str or None
        Bearer token of the ``/v1`` API (and of Label Studio's calls when set).
    label_studio : ads.label_studio.LabelStudioSync, optional
        Pushes each batch to a Label Studio project and pulls its annotations.
    public_url : str
        How Label Studio (and browsers) reach this server, for image URLs.
    """

    def __init__(self, session: Session, build_parts, *, token: str | None = None, label_studio=None,
                 public_url: str = "http://127.0.0.1:9090", pull_interval: float = 30.0, autostart: bool = True):
        self.session = session
        self.build_parts = build_parts
        self.token = token or None
        self.ls = label_studio
        self.public_url = public_url.rstrip("/")
        self.pull_interval = pull_interval
        self.dir = session.run.dir / SERVE_DIR
        (self.dir / "jobs").mkdir(parents=True, exist_ok=True)
        self._secret = self._load_secret()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, dict] = {}
        self._cancel: set[str] = set()
        self._events: queue.Queue = queue.Queue(maxsize=10000)
        self._stop = threading.Event()
        self._state_cache: tuple[int, dict] | None = None
        self._threads: list[threading.Thread] = []
        self._repush: list[dict] = []
        self._recover()
        if autostart:
            self.start()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for job in self._repush:
            self._push_quietly(job)
        self._repush = []
        for target, name in ((self._worker, "ads-serve-worker"), (self._syncer, "ads-serve-sync")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _load_secret(self) -> bytes:
        path = self.dir / "secret"
        if not path.exists():
            atomic_write_text(path, secrets.token_hex(32))
            os.chmod(path, 0o600)
        return bytes.fromhex(path.read_text().strip())

    def _recover(self) -> None:
        """Read the job files; a job that was queued or running when the server stopped is
        found finished (its batch is in the run state) or queued again."""
        state = self.session.run.load()
        for path in sorted((self.dir / "jobs").glob("*.json")):
            try:
                job = json.loads(path.read_text())
                if not isinstance(job, dict) or job.get("state") not in JOB_STATES:
                    raise ValueError("not a job")
            except (OSError, ValueError):
                logger.warning("ignoring unreadable job file %s", path)
                continue
            self._jobs[job["id"]] = job
            if job["state"] in ACTIVE:
                done = (job.get("expect_round") is not None and state["stage"] == "label"
                        and state["round"] == job["expect_round"] and self.session.picked(state["round"]) is not None)
                if done:
                    job.update(state="succeeded", stage="push", round=state["round"], finished=time.time(),
                               note="found finished after a server restart")
                    if self.ls is not None:
                        self._repush.append(job)  # in start(), once the public URL is known
                else:
                    job.update(state="queued", stage=None, progress={"done": 0, "total": 0}, error=None,
                               restarts=job.get("restarts", 0) + 1)
                self._save_job(job)

    # ------------------------------------------------------------ jobs
    def _save_job(self, job: dict) -> None:
        atomic_write_text(self.dir / "jobs" / f"{job['id']}.json", json.dumps(job))

    def active_job(self) -> dict | None:
        with self._lock:
            return next((dict(j) for j in self._jobs.values() if j["state"] in ACTIVE), None)

    def submit(self, budget: int | None = None, strategy: str | None = None, fraction: float | None = None,
               seed: int | None = None, reason: str = "api") -> dict:
        """Queue a selection; ParameterError for bad values, LockError (409) while one is active."""
        from ads._validation import check_fraction, check_int, check_seed

        owner = "POST /v1/select"
        if budget is not None:
            check_int(budget, "budget", owner, min_value=1)
        if fraction is not None:
            check_fraction(fraction, "fraction", owner)
        if seed is not None:
            check_seed(seed, "seed", owner)
        if strategy is not None:
            if not isinstance(strategy, str):
                raise ParameterError(f"The 'strategy' parameter of {owner} must be a string. Got {strategy!r}.")
            self.build_parts(strategy, self.session.config)  # an unknown name fails here, not in the job
        state = self.session.run.load()
        if state["stage"] == "done":
            raise ParameterError("the run is done; it selects no more batches.")
        with self._wake:
            busy = next((j for j in self._jobs.values() if j["state"] in ACTIVE), None)
            if busy is not None:
                raise JobConflict(f"job {busy['id']} is {busy['state']}; one selection runs at a time.")
            job = {"id": uuid.uuid4().hex[:16], "state": "queued", "stage": None, "progress": {"done": 0, "total": 0},
                   "error": None, "params": {"budget": budget, "strategy": strategy, "fraction": fraction, "seed": seed},
                   "reason": reason, "created": time.time(), "started": None, "finished": None, "round": None,
                   "expect_round": None}
            self._jobs[job["id"]] = job
            self._save_job(job)
            self._wake.notify_all()
        return dict(job)

    def job(self, job_id: str) -> dict | None:
        with self._lock:
            j = self._jobs.get(job_id)
            return None if j is None else dict(j)

    def cancel(self, job_id: str) -> dict | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job["state"] == "queued":
                job.update(state="cancelled", finished=time.time())
                self._save_job(job)
            elif job["state"] == "running":
                self._cancel.add(job_id)
                job["cancel_requested"] = True
            return dict(job)

    def result(self, job: dict) -> dict | None:
        if job["state"] != "succeeded" or job.get("round") is None:
            return None
        return self.session.picked(job["round"])

    def _worker(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                job = next((j for j in sorted(self._jobs.values(), key=lambda j: j["created"])
                            if j["state"] == "queued"), None)
                if job is None:
                    self._wake.wait(1.0)
                    continue
                state = self.session.run.load()
                job.update(state="running", started=time.time(), stage="embed",
                           expect_round=state["round"] + (1 if state["stage"] == "label" else 0))
                self._save_job(job)
            self._run(job)

    def _progress(self, job: dict):
        def callback(stage, done, total):
            with self._lock:
                if job["id"] in self._cancel:
                    raise Cancelled(f"job {job['id']} was cancelled.")
                changed = stage != job["stage"]
                job.update(stage=stage, progress={"done": done, "total": total})
                if changed:
                    self._save_job(job)
        return callback

    def _run(self, job: dict) -> None:
        p = job["params"]
        try:
            strategy, scorer = self.build_parts(p["strategy"], self.session.config)
            res = self.session.select(p["budget"], strategy=strategy, scorer=scorer, strategy_name=p["strategy"],
                                      fraction=p["fraction"], seed=p["seed"], progress=self._progress(job))
            job["round"] = res["round"]
            self._progress(job)("push", 0, 1)
            if self.ls is not None:
                self.ls.push(res, self.image_url)
            final = {"state": "succeeded", "stage": "push", "progress": {"done": 1, "total": 1}}
        except Cancelled as e:
            final = {"state": "cancelled", "error": str(e)}
        except AdsError as e:
            final = {"state": "failed", "error": str(e)}
        except Exception as e:  # a bug or an unreachable Label Studio: the job fails, the server stays up
            logger.exception("job %s failed", job["id"])
            final = {"state": "failed", "error": f"{type(e).__name__}: {e}"}
        with self._lock:
            self._cancel.discard(job["id"])
            job.update(final, finished=time.time())
            self._save_job(job)
        logger.info("job %s %s%s", job["id"], job["state"], f": {job['error']}" if job.get("error") else "")

    def _push_quietly(self, job: dict) -> None:
        try:
            self.ls.push(self.session.picked(job["round"]), self.image_url)
        except Exception as e:  # retried by the next pull
            logger.warning("pushing round %s to Label Studio failed: %s", job["round"], e)

    # ------------------------------------------------------------ labels and events
    def add_labels(self, labels, source: str = "api") -> dict:
        out = self.session.add_labels(labels)
        st = self.session.state()
        out.update(pending=st["pending"], batch_labeled=st["batch_labeled"], batch_size=len(st["batch"]))
        if self.ls is not None and st["batch"] and st["batch_labeled"] == len(st["batch"]):
            self._maybe_next_round("batch complete")
        return out

    def _maybe_next_round(self, reason: str) -> None:
        try:
            self.submit(reason=reason)
            logger.info("next round queued (%s)", reason)
        except (JobConflict, ParameterError) as e:
            logger.info("no new round (%s): %s", reason, e)

    def queue_event(self, event: dict) -> bool:
        try:
            self._events.put_nowait(event)
            return True
        except queue.Full:
            return False

    def _syncer(self) -> None:
        last_pull = 0.0
        while not self._stop.is_set():
            try:
                event = self._events.get(timeout=0.5)
            except queue.Empty:
                event = None
            try:
                if event is not None:
                    self._handle_event(event)
                if self.ls is not None and self.ls.project_id is not None and time.monotonic() - last_pull > self.pull_interval:
                    last_pull = time.monotonic()
                    self._pull()
            except Exception as e:  # Label Studio down, a bad event: log, keep syncing
                logger.warning("label studio sync: %s: %s", type(e).__name__, e)

    def _handle_event(self, event: dict) -> None:
        action = event.get("action")
        if action == "START_TRAINING":
            if self.ls is not None and self.ls.project_id is not None:
                self._pull()
            self._maybe_next_round("START_TRAINING")
        elif action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED") and self.ls is not None:
            labels = self.ls.labels_from_event(event)
            if labels:
                self._add_known(labels)
        elif action == "PULL" and self.ls is not None:
            self._pull()

    def _pull(self) -> None:
        labels = self.ls.pull()
        if labels:
            self._add_known(labels)

    def _add_known(self, labels: dict) -> None:
        """Add the labels of offered, not yet committed items (one bad label is logged, not fatal)."""
        for pid, lab in labels.items():
            try:
                self.add_labels({pid: lab}, source="label-studio")
            except AdsError as e:
                logger.warning("label of %r from Label Studio not taken: %s", pid, e)

    # ------------------------------------------------------------ the ML backend's answers
    def cached_state(self) -> dict:
        """The run state, re-read only when ``state.json`` changed."""
        path = self.session.run.state_path
        mtime = path.stat().st_mtime_ns
        cache = self._state_cache
        if cache is None or cache[0] != mtime:
            state = self.session.run.load()
            ranks = {}
            for rec in state["records"]:
                n = max(1, len(rec.get("picked", [])))
                ranks.update({p: 1.0 + i / n for i, p in enumerate(rec.get("picked", []))})
            if state["stage"] == "label":
                n = max(1, len(state["batch"]))
                ranks.update({p: i / n for i, p in enumerate(state["batch"])})
            cache = (mtime, {"state": state, "ranks": ranks})
            self._state_cache = cache
        return cache[1]

    def model_version(self) -> str:
        return f"round-{self.cached_state()['state']['round']}"

    def predict(self, tasks: list) -> list:
        cached = self.cached_state()
        version = f"round-{cached['state']['round']}"
        out = []
        for t in tasks:
            pid = t.get("data", {}).get("ads_id") if isinstance(t, dict) and isinstance(t.get("data"), dict) else None
            score = cached["ranks"].get(pid, 2.0) if isinstance(pid, str) else 2.0
            out.append({"result": [], "score": score, "model_version": version})
        return out

    # ------------------------------------------------------------ images
    def sign(self, pid: str) -> str:
        return hmac.new(self._secret, pid.encode(), hashlib.sha256).hexdigest()[:32]

    def image_url(self, pid: str) -> str:
        from urllib.parse import quote

        return f"{self.public_url}/images/{quote(pid, safe='')}.png?sig={self.sign(pid)}"

    def image_png(self, pid: str) -> bytes | None:
        import io

        import numpy as np
        from PIL import Image

        pool = self._pool()
        row = self._index().get(pid)
        if row is None or pool.kind != "images":
            return None
        img = pool.take(np.array([row]))[0]
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, format="PNG")
        return buf.getvalue()

    def _pool(self):
        if not hasattr(self, "_pool_obj"):
            from ads.pool import open_pool

            self._pool_obj = open_pool(self.session.config["pool"], role="pool")
        return self._pool_obj

    def _index(self) -> dict:
        if not hasattr(self, "_index_obj"):
            self._index_obj = {str(p): i for i, p in enumerate(self._pool().ids())}
        return self._index_obj


class JobConflict(AdsError):
    """A selection is queued or running already (HTTP 409)."""


# ---------------------------------------------------------------- the HTTP layer
def _openapi() -> dict:
    job = {"type": "object", "properties": {
        "id": {"type": "string"}, "state": {"enum": list(JOB_STATES)}, "stage": {"enum": [None, *STAGES]},
        "progress": {"type": "object", "properties": {"done": {"type": "integer"}, "total": {"type": "integer"}}},
        "error": {"type": ["string", "null"]}}}
    err = {"description": "error", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
    ok = lambda schema: {"description": "ok", "content": {"application/json": {"schema": schema}}}  # noqa: E731
    body = lambda schema: {"required": True, "content": {"application/json": {"schema": schema}}}  # noqa: E731
    sec = [{"bearer": []}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "ads serve", "version": "1", "description": "Selection service: pick the unlabeled data worth labeling."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/select": {"post": {"security": sec, "summary": "queue a selection job", "requestBody": body({
                "type": "object", "properties": {"budget": {"type": "integer", "minimum": 1}, "strategy": {"type": "string"},
                                                 "fraction": {"type": "number"}, "seed": {"type": "integer"}},
                "additionalProperties": False}),
                "responses": {"202": ok({"type": "object", "properties": {"job": {"type": "string"}}}), "400": err,
                              "401": err, "409": err, "413": err}}},
            "/v1/jobs/{id}": {"get": {"security": sec, "summary": "a job's state", "responses": {"200": ok(job), "404": err}},
                              "delete": {"security": sec, "summary": "cancel a job", "responses": {"202": ok(job), "404": err}}},
            "/v1/jobs/{id}/result": {"get": {"security": sec, "summary": "the picks, in pick order", "responses": {
                "200": ok({"type": "object", "properties": {"picked": {"type": "array", "items": {
                    "type": "object", "properties": {"id": {"type": "string"}, "score": {"type": "number"}}}}}}),
                "404": err, "409": err}}},
            "/v1/labels": {"post": {"security": sec, "summary": "add labels (class name, index or 'reject')",
                                    "requestBody": body({"type": "object", "properties": {"labels": {"type": "array", "items": {
                                        "type": "object", "properties": {"id": {"type": "string"},
                                                                         "label": {"type": ["string", "integer"]}},
                                        "required": ["id", "label"]}}}, "required": ["labels"]}),
                                    "responses": {"200": ok({"type": "object"}), "400": err, "401": err, "409": err, "413": err}}},
            "/v1/state": {"get": {"security": sec, "summary": "round, counts, current batch", "responses": {"200": ok({"type": "object"})}}},
            "/health": {"get": {"summary": "Label Studio ML backend: health", "responses": {"200": ok({"type": "object"})}}},
            "/setup": {"post": {"summary": "Label Studio ML backend: setup (returns model_version)", "responses": {"200": ok({"type": "object"})}}},
            "/predict": {"post": {"summary": "Label Studio ML backend: scores by pick rank", "responses": {"200": ok({"type": "object"})}}},
            "/webhook": {"post": {"summary": "Label Studio events (queued)", "responses": {"200": ok({"type": "object"})}}},
            "/versions": {"get": {"summary": "model versions (rounds)", "responses": {"200": ok({"type": "object"})}}},
        },
    }


def create_app(service: Service, *, max_body: int = MAX_BODY):
    """The Flask app of ``service``: the ML backend endpoints, ``/v1`` and ``/openapi.json``."""
    from flask import Flask, Response, jsonify, request
    from werkzeug.exceptions import HTTPException

    app = Flask("ads.serve")
    app.config["MAX_CONTENT_LENGTH"] = int(max_body)
    app.json.sort_keys = False

    def error(status: int, message: str, **headers):
        resp = jsonify(error=" ".join(str(message).split()))
        resp.status_code = status
        resp.headers.update(headers)
        return resp

    @app.errorhandler(HTTPException)
    def _http(e):
        return error(e.code or 400, e.description or e.name)

    @app.errorhandler(AdsError)
    def _ads(e):
        status = 409 if isinstance(e, (JobConflict, LabelConflict, LockError)) else 400
        return error(status, str(e))

    @app.errorhandler(Exception)
    def _bug(e):
        logger.exception("internal error on %s %s", request.method, request.path)
        return error(500, f"internal error ({type(e).__name__}); see the server's log.")

    def authorized() -> bool:
        if service.token is None:
            return True
        got = request.headers.get("Authorization", "")
        if got.startswith("Bearer "):
            return hmac.compare_digest(got[7:].strip().encode(), service.token.encode())
        if request.authorization is not None and request.authorization.type == "basic":  # Label Studio's BASIC_AUTH
            return hmac.compare_digest((request.authorization.password or "").encode(), service.token.encode())
        return False

    @app.before_request
    def _auth():
        path = request.path
        if path.startswith("/v1") or path in ("/setup", "/predict", "/webhook", "/train", "/versions"):
            if not authorized():
                return error(401, "missing or wrong credentials: send 'Authorization: Bearer $ADS_API_TOKEN'.",
                             **{"WWW-Authenticate": 'Bearer realm="ads"'})
        return None

    def body(allowed: set | None = None, required=()) -> dict:
        if request.content_length is None and not request.get_data(cache=True):
            data = None
        else:
            data = request.get_json(force=True, silent=True)
        if not isinstance(data, dict):
            raise DataError("the request body must be a JSON object.")
        if allowed is not None:
            extra = sorted(set(data) - allowed)
            if extra:
                raise DataError(f"unknown fields {extra}; expected some of {sorted(allowed)}.")
        missing = [k for k in required if k not in data]
        if missing:
            raise DataError(f"missing fields {missing}.")
        return data

    def public_job(job: dict) -> dict:
        keys = ("id", "state", "stage", "progress", "error", "params", "round", "created", "started", "finished",
                "cancel_requested", "restarts")
        return {k: job[k] for k in keys if k in job}

    # ---- native API
    @app.post("/v1/select")
    def v1_select():
        d = body({"budget", "strategy", "fraction", "seed"})
        for name, kind in (("budget", int), ("seed", int), ("fraction", (int, float))):
            if d.get(name) is not None and (isinstance(d[name], bool) or not isinstance(d[name], kind)):
                raise DataError(f"field {name!r} must be a number{'' if name == 'fraction' else ' (integer)'}. Got {d[name]!r}.")
        job = service.submit(d.get("budget"), d.get("strategy"), d.get("fraction"), d.get("seed"))
        resp = jsonify(job=job["id"], state=job["state"])
        resp.status_code = 202
        resp.headers["Location"] = f"/v1/jobs/{job['id']}"
        return resp

    def get_job(job_id):
        job = service.job(job_id)
        if job is None:
            return None, error(404, f"no job {job_id!r}.")
        return job, None

    @app.get("/v1/jobs/<job_id>")
    def v1_job(job_id):
        job, err = get_job(job_id)
        return err or jsonify(public_job(job))

    @app.delete("/v1/jobs/<job_id>")
    def v1_cancel(job_id):
        job = service.cancel(job_id)
        if job is None:
            return error(404, f"no job {job_id!r}.")
        resp = jsonify(public_job(job))
        resp.status_code = 202 if job["state"] in ACTIVE else 200
        return resp

    @app.get("/v1/jobs/<job_id>/result")
    def v1_result(job_id):
        job, err = get_job(job_id)
        if err:
            return err
        if job["state"] != "succeeded":
            return error(409, f"job {job_id} is {job['state']}; it has no result" + (f": {job['error']}" if job["error"] else "."))
        res = service.result(job)
        if res is None:
            return error(409, f"the result of job {job_id} (round {job['round']}) is gone.")
        return jsonify(job=job_id, round=res["round"], picked=res["picked"])

    @app.post("/v1/labels")
    def v1_labels():
        d = body({"labels"}, required=("labels",))
        labels = d["labels"]
        if not isinstance(labels, list) or not labels:
            raise DataError("field 'labels' must be a non-empty list of {\"id\", \"label\"} objects.")
        if len(labels) > MAX_LABELS:
            raise DataError(f"field 'labels' holds {len(labels)} labels; at most {MAX_LABELS} per request.")
        return jsonify(service.add_labels(labels))

    @app.get("/v1/state")
    def v1_state():
        st = service.session.state()
        job = service.active_job()
        st["job"] = None if job is None else public_job(job)
        return jsonify(st)

    @app.get("/openapi.json")
    def openapi():
        return jsonify(_openapi())

    # ---- Label Studio ML backend
    @app.get("/health")
    @app.get("/")
    def health():
        return jsonify(status="UP", model_class="ads", model_version=service.model_version())

    @app.post("/setup")
    def setup():
        d = body()
        if service.ls is not None:
            service.ls.bind(d.get("project"), d.get("schema"))
        return jsonify(model_version=service.model_version())

    @app.post("/predict")
    def predict():
        d = body()
        tasks = d.get("tasks")
        if not isinstance(tasks, list):
            raise DataError("field 'tasks' must be a list of tasks.")
        return jsonify(results=service.predict(tasks), model_version=service.model_version())

    @app.post("/webhook")
    @app.post("/train")
    def webhook():
        d = body()
        if request.path == "/train":
            d = {"action": "START_TRAINING", **d}
        if not isinstance(d.get("action"), str):
            raise DataError("a webhook event needs a string 'action'.")
        if not service.queue_event(d):
            return error(503, "too many queued events; retry later.")
        return jsonify(status="queued")

    @app.get("/versions")
    def versions():
        rnd = service.cached_state()["state"]["round"]
        return jsonify(versions=[f"round-{k}" for k in range(rnd + 1)])

    @app.get("/images/<path:name>")
    def image(name):
        pid = name[:-4] if name.endswith(".png") else name
        sig = request.args.get("sig", "")
        if not hmac.compare_digest(sig.encode(), service.sign(pid).encode()):
            return error(403, "bad or missing image signature.")
        png = service.image_png(pid)
        if png is None:
            return error(404, f"no image for id {pid!r}.")
        return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return app


def make_server(app, host: str = "127.0.0.1", port: int = 9090, *, threads: int = 8, max_body: int = MAX_BODY):
    """A waitress server for ``app`` (``server.effective_port`` after binding port 0)."""
    from waitress import create_server

    return create_server(app, host=host, port=port, threads=threads, max_request_body_size=int(max_body) * 2,
                         ident="ads", clear_untrusted_proxy_headers=True)


__all__ = ["Service", "JobConflict", "create_app", "make_server", "check_bind", "is_loopback", "MAX_BODY"]
