"""Label Studio sync for ``ads serve --label-studio URL`` (its REST API, ``LABEL_STUDIO_API_KEY``).

Each round the picked items become tasks ``{"image", "ads_id", "ads_round"}`` with a
prediction whose score is the pick rank / batch size and whose model version is
``round-K``; the project is then set to uncertainty sampling at that model version, so
``/api/projects/ID/next`` serves the batch in pick order. Annotations come back through
webhook events and a periodic pull (webhooks can be lost): the first choice of an
annotation is the class name; a skipped task (``was_cancelled``) is a rejected item.
The project's choices must be the stores' classes, or the sync refuses it.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from ads._io import atomic_write_text
from ads.errors import AdsError, DataError, ParameterError

logger = logging.getLogger(__name__)

STATE = "label_studio.json"
TIMEOUT = 10.0


class LabelStudioError(AdsError):
    """Label Studio refused a call or cannot be reached."""


def choices_of(label_config: str) -> list[str]:
    """The ``<Choice value=...>`` values of a labeling configuration, in order."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as e:
        raise DataError(f"the Label Studio project's labeling configuration is not XML ({e}).") from None
    return [c.get("value") for c in root.iter("Choice") if c.get("value") is not None]


def label_config(classes) -> str:
    """A single-choice image classification configuration for ``classes``."""
    from xml.sax.saxutils import quoteattr

    choices = "".join(f"<Choice value={quoteattr(str(c))}/>" for c in classes)
    return (f'<View><Image name="image" value="$image"/><Choices name="label" toName="image" choice="single">'
            f"{choices}</Choices></View>")


class LabelStudioSync:
    """The link between a run and one Label Studio project.

    Parameters
    ----------
    url : str
        Label Studio's base URL.
    api_key : str
        A user's API token (legacy token, sent as ``Authorization: Token KEY``).
    classes : list of str
        The stores' class names; the project's choices must be the same set.
    state_dir : path
        Where ``label_studio.json`` (project id, ids already pushed) is kept.
    project : int, optional
        The project; without it, the project of the first ``/setup`` call is taken.
    """

    def __init__(self, url: str, api_key: str, classes, state_dir, *, project: int | None = None):
        if not api_key:
            raise ParameterError("--label-studio needs LABEL_STUDIO_API_KEY (a Label Studio user's API token).")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.classes = [str(c) for c in classes]
        self.path = Path(state_dir) / STATE
        self._lock = threading.Lock()
        self._state = self._load()
        if project is not None:
            self.bind(project)

    @property
    def project_id(self) -> int | None:
        return self._state.get("project")

    def _load(self) -> dict:
        try:
            state = json.loads(self.path.read_text())
            return state if isinstance(state, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps(self._state))

    # ------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Token {self.api_key}", "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            raise LabelStudioError(f"Label Studio {method} {path}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise LabelStudioError(f"Label Studio at {self.url} cannot be reached ({e}).") from None
        return json.loads(raw) if raw else None

    # ------------------------------------------------------------ project
    def bind(self, project, schema: str | None = None) -> None:
        """Take ``project`` (an id, or Label Studio's ``"ID.TIMESTAMP"`` uid) after checking its
        classes; a server already bound to another project refuses it."""
        try:
            pid = int(str(project).split(".")[0])
        except ValueError:
            raise DataError(f"Label Studio project {project!r} is not a project id.") from None
        with self._lock:
            if self.project_id == pid:
                return
            if self.project_id is not None:
                raise ParameterError(f"this ads serve works with Label Studio project {self.project_id}, not {pid}.")
            config = schema if schema else self.request("GET", f"/api/projects/{pid}")["label_config"]
            self.check_classes(config)
            self._state = {"project": pid, "pushed": {}}
            self._save()
        logger.info("bound to Label Studio project %d", pid)

    def check_classes(self, config: str) -> None:
        got = choices_of(config)
        if sorted(got) != sorted(self.classes):
            raise DataError(f"the Label Studio project's choices {got} differ from the stores' classes {self.classes}.")

    # ------------------------------------------------------------ push and pull
    def push(self, result: dict, image_url) -> int:
        """Import the round's picks not yet in the project, with their predictions; set the
        project's sampling and model version. Returns the number of tasks imported."""
        if self.project_id is None:
            logger.warning("no Label Studio project yet (connect the ML backend); round %s not pushed", result["round"])
            return 0
        pid = self.project_id
        version = f"round-{result['round']}"
        n = max(1, len(result["picked"]))
        with self._lock:
            pushed = self._state.setdefault("pushed", {})
            tasks = [{"data": {"image": image_url(p["id"]), "ads_id": p["id"], "ads_round": result["round"]},
                      "predictions": [{"result": [], "score": i / n, "model_version": version}]}
                     for i, p in enumerate(result["picked"]) if p["id"] not in pushed]
            if tasks:
                self.request("POST", f"/api/projects/{pid}/import", tasks)
                pushed.update({t["data"]["ads_id"]: result["round"] for t in tasks})
                self._save()
        self.request("PATCH", f"/api/projects/{pid}", {"sampling": "Uncertainty sampling", "model_version": version})
        logger.info("pushed round %s to Label Studio project %d: %d tasks", result["round"], pid, len(tasks))
        return len(tasks)

    def label_of(self, annotation: dict):
        """An annotation as a label (class name or ``reject``); None if it has none."""
        if not isinstance(annotation, dict):
            return None
        if annotation.get("was_cancelled"):
            return "reject"
        for r in annotation.get("result") or []:
            choices = (r.get("value") or {}).get("choices") if isinstance(r, dict) else None
            if choices:
                return str(choices[0])
        return None

    def labels_from_event(self, event: dict) -> dict:
        """``{ads_id: label}`` of an ANNOTATION_CREATED / UPDATED event."""
        task = event.get("task") or {}
        data = task.get("data") if isinstance(task, dict) else None
        pid = data.get("ads_id") if isinstance(data, dict) else None
        lab = self.label_of(event.get("annotation"))
        return {pid: lab} if isinstance(pid, str) and lab is not None else {}

    def pull(self) -> dict:
        """``{ads_id: label}`` of every annotated task in the project (its latest annotation)."""
        if self.project_id is None:
            return {}
        tasks = self.request("GET", f"/api/projects/{self.project_id}/export?exportType=JSON&download_all_tasks=false")
        out = {}
        for t in tasks or []:
            pid = (t.get("data") or {}).get("ads_id")
            anns = sorted(t.get("annotations") or [], key=lambda a: (a.get("updated_at") or "", a.get("id") or 0))
            labs = [self.label_of(a) for a in anns]
            labs = [lab for lab in labs if lab is not None]
            if isinstance(pid, str) and labs:
                out[pid] = labs[-1]
        return out


__all__ = ["LabelStudioSync", "LabelStudioError", "choices_of", "label_config"]
