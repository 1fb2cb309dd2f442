"""
A small Hub-compatible HTTP server on 127.0.0.1 for the upload and download tests: exactly the endpoints that
`huggingface_hub` calls for `create_repo`, `create_branch`, `upload_folder` (README metadata validation, preupload,
commit), `model_info` and `hf_hub_download` (HEAD/GET on `resolve`), with token checks and private repositories.

What it does not do, and so what the tests do not show: LFS / Xet transfers (preupload answers "regular" for every
file, so the client inlines contents as base64 in the commit, as it does for small files on the real Hub), pull
requests, and git history beyond one commit chain per branch.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files
    messages: dict[str, str] = field(default_factory=dict)  # sha -> commit message


class HubState:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def files(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None
        sha = repo.branches.get(revision, revision if revision in repo.commits else None)
        return (sha, repo.commits[sha]) if sha is not None else None


def _empty_commit() -> str:
    return hashlib.sha1(b"empty").hexdigest()


def validate_card(endpoint: str, card) -> None:
    """
    What `RepoCard.validate` does, against `endpoint`: huggingface_hub releases before the one that reads
    `constants.ENDPOINT` there post to huggingface.co whatever `HF_ENDPOINT` says. Raises `ValueError` on errors.
    """
    from huggingface_hub.utils import get_session, hf_raise_for_status

    response = get_session().post(
        f"{endpoint}/api/validate-yaml",
        json={"repoType": "model", "content": str(card)},
        headers={"Accept": "text/plain"},
    )
    if response.status_code == 400:
        raise ValueError(response.text)
    hf_raise_for_status(response)


def _model_index_errors(metadata: dict) -> list[str]:
    """
    The Hub's rules for `model-index` (hub-docs modelcard.md): a list of models, each with a `name` and `results`;
    every result with `task.type`, `dataset.type` and `dataset.name`, and metrics each with a `type` and a `value`.
    `base_model` must be repo ids. Also what `huggingface_hub` needs to read it back (`model_index_to_eval_results`).
    """
    from huggingface_hub.repocard_data import model_index_to_eval_results

    errors = []
    base_models = metadata.get("base_model", [])
    for base_model in [base_models] if isinstance(base_models, str) else base_models:
        if not isinstance(base_model, str) or base_model.count("/") > 1 or base_model.startswith(("/", ".")):
            errors.append(f"base_model {base_model!r} is not a repo id")
    if "model-index" not in metadata:
        return errors
    models = metadata["model-index"]
    if not isinstance(models, list) or not models:
        return [*errors, "model-index must be a non-empty list"]
    for model in models:
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append("model-index[].name must be a string")
            continue
        for result in model.get("results") or []:
            for path in ("task.type", "dataset.type", "dataset.name"):
                outer, inner = path.split(".")
                if not isinstance((result.get(outer) or {}).get(inner), str):
                    errors.append(f"model-index[].results[].{path} must be a string")
            metrics = result.get("metrics")
            if not metrics or any(not isinstance(m.get("type"), str) or m.get("value") is None for m in metrics):
                errors.append("model-index[].results[].metrics[] need a type and a value")
    if not errors:
        try:
            model_index_to_eval_results(models)
        except (KeyError, TypeError, ValueError) as error:
            errors.append(f"model-index cannot be read: {error!r}")
    return errors


class HubHandler(BaseHTTPRequestHandler):
    state: HubState  # set on the subclass made by `serve`

    def log_message(self, *args):
        pass

    # ------------------------------------------------------------------------------------------------------- helpers

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str((headers or {}).get("Content-Length", len(body))))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, payload, error_code: str | None = None):
        headers = {"Content-Type": "application/json"}
        if error_code:
            headers |= {"X-Error-Code": error_code, "X-Error-Message": str(payload.get("error", ""))}
        self._send(status, json.dumps(payload).encode(), headers)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.state.token}"

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _split(self, path: str, marker: str) -> tuple[str, str]:
        repo_part, _, rest = path.partition(f"/{marker}/")
        return repo_part, unquote(rest)

    # ------------------------------------------------------------------------------------------------------- routes

    def do_POST(self):
        path = urlparse(self.path).path
        self.state.requests.append(("POST", path))
        if path == "/api/validate-yaml":  # open to anyone, as on the Hub
            return self._validate_yaml(json.loads(self._body()))
        if not self._authorized():
            return self._json(401, {"error": "Invalid credentials"})
        if path == "/api/repos/create":
            return self._create_repo(json.loads(self._body()))
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            for marker, handler in (
                ("preupload", self._preupload),
                ("commit", self._commit),
                ("branch", self._branch),
            ):
                if f"/{marker}/" in rest:
                    repo_id, revision = self._split(rest, marker)
                    return handler(repo_id, revision)
        return self._json(404, {"error": f"no route {path}"})

    def do_GET(self):
        self._read(head=False)

    def do_HEAD(self):
        self._read(head=True)

    def _read(self, head: bool):
        path = urlparse(self.path).path
        self.state.requests.append(("HEAD" if head else "GET", path))
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            repo_id, revision = self._split(rest, "revision") if "/revision/" in rest else (rest, "main")
            return self._model_info(repo_id, revision)
        if "/resolve/" in path:
            repo_id, rest = self._split(path.lstrip("/"), "resolve")
            revision, _, filename = rest.partition("/")
            return self._resolve(repo_id, unquote(revision), filename, head)
        return self._json(404, {"error": f"no route {path}"})

    # ------------------------------------------------------------------------------------------------------ actions

    def _create_repo(self, payload: dict):
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        with self.state.lock:
            if repo_id in self.state.repos:
                return self._json(409, {"error": "You already created this model repo", "url": self._url(repo_id)})
            sha = _empty_commit()
            private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
            self.state.repos[repo_id] = Repo(private=private, branches={"main": sha}, commits={sha: {}})
        return self._json(200, {"url": self._url(repo_id), "name": repo_id})

    def _validate_yaml(self, payload: dict):
        """The card metadata must parse as a YAML mapping with a string licence and lists of tags / datasets."""
        import yaml

        content = payload["content"]
        if content.startswith("---"):  # a whole card: its front matter is the metadata
            content = content.split("---", 2)[1]
        try:
            metadata = yaml.safe_load(content)
        except yaml.YAMLError as error:
            return self._json(400, {"errors": [{"message": f"invalid YAML: {error}"}]})
        errors = []
        if not isinstance(metadata, dict):
            errors.append({"message": "metadata must be a mapping"})
        else:
            if not isinstance(metadata.get("license", ""), str):
                errors.append({"message": "license must be a string"})
            for key in ("tags", "datasets"):
                if key in metadata and not isinstance(metadata[key], list):
                    errors.append({"message": f"{key} must be a list"})
            errors += [{"message": message} for message in _model_index_errors(metadata)]
        return self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _branch(self, repo_id: str, branch: str):
        repo = self.state.repos.get(repo_id)
        if repo is None:
            return self._json(404, {"error": "Repository not found"}, "RepoNotFound")
        if branch in repo.branches:
            return self._json(409, {"error": f"Reference already exists: {branch}"})
        body = self._body()
        start = json.loads(body).get("startingPoint", "main") if body else "main"
        repo.branches[branch] = repo.branches.get(start, start)
        return self._json(200, {})

    def _preupload(self, repo_id: str, revision: str):
        payload = json.loads(self._body())
        if repo_id not in self.state.repos:
            return self._json(404, {"error": "Repository not found"}, "RepoNotFound")
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in payload["files"]]
        return self._json(200, {"files": files})

    def _commit(self, repo_id: str, revision: str):
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        with self.state.lock:
            repo = self.state.repos.get(repo_id)
            if repo is None:
                return self._json(404, {"error": "Repository not found"}, "RepoNotFound")
            if revision not in repo.branches:
                return self._json(404, {"error": f"Invalid rev id: {revision}"}, "RevisionNotFound")
            files = dict(repo.commits[repo.branches[revision]])
            message = ""
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    message = value["summary"]
                elif key == "file":
                    assert value["encoding"] == "base64"
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                else:
                    return self._json(400, {"error": f"this test server does not support {key!r} operations"})
            digest = hashlib.sha1(
                repr((repo.branches[revision], sorted(files.items()), message, time.time())).encode()
            )
            sha = digest.hexdigest()
            repo.commits[sha], repo.messages[sha], repo.branches[revision] = files, message, sha
        return self._json(
            200, {"commitUrl": f"{self._url(repo_id)}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None}
        )

    def _readable(self, repo_id: str, revision: str) -> tuple[Repo, str, dict[str, bytes]] | None:
        """The repo and the files at `revision`, or None after answering 401 / 404 as the Hub does."""
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            self._json(401, {"error": "Repository not found"}, "RepoNotFound")
            return None
        found = self.state.files(repo_id, revision)
        if found is None:
            self._json(404, {"error": f"Invalid rev id: {revision}"}, "RevisionNotFound")
            return None
        return (repo, *found)

    def _model_info(self, repo_id: str, revision: str):
        if (readable := self._readable(repo_id, revision)) is None:
            return
        repo, sha, files = readable
        return self._json(
            200,
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": repo.private,
                "tags": [],
                "siblings": [{"rfilename": name} for name in sorted(files)],
            },
        )

    def _resolve(self, repo_id: str, revision: str, filename: str, head: bool):
        if (readable := self._readable(repo_id, revision)) is None:
            return
        _, sha, files = readable
        if filename not in files:
            return self._json(404, {"error": f"{filename} does not exist"}, "EntryNotFound")
        content = files[filename]
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
            "Content-Length": len(content),
        }
        return self._send(200, content, headers, head=head)

    def _url(self, repo_id: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/{repo_id}"


class LocalHub:
    """Starts the server on a free port of 127.0.0.1; `.endpoint` is what `HF_ENDPOINT` should be."""

    def __init__(self, token: str = "hf_test_token"):
        self.state = HubState(token)
        handler = type("BoundHubHandler", (HubHandler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _QuietFileHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_directory(directory):
    """A plain file server on 127.0.0.1 over `directory` (a PhysioNet-like mirror); yields its base URL."""
    handler = functools.partial(_QuietFileHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
