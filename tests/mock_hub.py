"""A local stand-in for the Hugging Face Hub, for huggingface_hub's real download and upload code.

Downloads: HEAD/GET /{repo_id}/resolve/{revision}/{filename} from memory on 127.0.0.1 with the
headers hf_hub_download reads (X-Repo-Commit, ETag, Content-Length).

Uploads, the small-file path of ``HfApi.create_repo`` / ``create_branch`` / ``upload_folder`` /
``create_commit`` (huggingface_hub 2.x):

- POST /api/repos/create {name, organization, visibility}: 200 {url}, 409 if it exists;
- POST /api/validate-yaml {content}: 400 when the README's front matter is not YAML;
- POST /api/models/{repo_id}/branch/{branch}: 200, 409 if it exists;
- POST /api/models/{repo_id}/preupload/{revision}: "regular" for every file, shouldIgnore false;
- POST /api/models/{repo_id}/commit/{revision}: the NDJSON payload (a header line, then one line
  per file with its base64 content); the files are then served by the resolve endpoints.

Writes need an ``Authorization: Bearer`` header (and, when ``tokens`` is set, one of them): 401
otherwise, as the Hub. Anything unknown is a 404 with the Hub's X-Error-Code.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import yaml

MAIN = "main"


class MockHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}  # (repo_id, filename) on main (and any revision)
        self.revision_files: dict[tuple[str, str, str], bytes] = {}  # (repo_id, revision, filename)
        self.repos: dict[str, dict] = {}  # created repos: repo_id -> {"private": bool}
        self.branches: set[tuple[str, str]] = set()
        self.commits: list[dict] = []  # {repo_id, revision, summary, files, oid}
        self.requests: list[tuple[str, str]] = []
        self.tokens: set[str] | None = None  # None: any bearer token is accepted
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body and self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json",
                                                                  **(headers or {})})

            def _error(self, status: int, code: str, message: str) -> None:
                self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

            def _authorised(self) -> bool:
                auth = self.headers.get("Authorization", "")
                token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
                if token and (hub.tokens is None or token in hub.tokens):
                    return True
                self._json(401, {"error": "Invalid credentials in Authorization header"},
                           {"X-Error-Message": "Invalid credentials in Authorization header"})
                return False

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self) -> None:
                path = unquote(self.path.split("?", 1)[0])
                hub.requests.append((self.command, path))
                parts = path.strip("/").split("/")
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                    data = hub.revision_files.get((repo_id, revision, filename), hub.files.get((repo_id, filename)))
                    if data is not None:
                        return self._send(200, data, {
                            "Content-Type": "application/octet-stream",
                            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                            "X-Repo-Commit": hub.head(repo_id)})
                    code = "EntryNotFound" if hub.knows(repo_id) else "RepoNotFound"
                else:
                    code = "RepoNotFound"
                self._error(404, code, f"{code}: {path}")

            def do_HEAD(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                raw_path = self.path.split("?", 1)[0]
                path = unquote(raw_path)
                hub.requests.append(("POST", path))
                body = self._body()
                if path == "/api/validate-yaml":
                    content = json.loads(body).get("content", "")
                    front = content.split("---")[1] if content.startswith("---") else ""
                    try:
                        yaml.safe_load(front)
                    except yaml.YAMLError as e:
                        return self._json(400, {"errors": [{"message": str(e)}], "warnings": []})
                    return self._json(200, {"errors": [], "warnings": []})
                if not self._authorised():
                    return
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    repo_id = "/".join(p for p in (payload.get("organization"), payload["name"]) if p)
                    if hub.knows(repo_id):  # the Hub's 409 carries the url, which create_repo(exist_ok=True) reads
                        return self._json(409, {"error": "You already created this model repo",
                                                "url": f"{hub.url}/{repo_id}"},
                                          {"X-Error-Message": "You already created this model repo"})
                    hub.repos[repo_id] = {"private": payload.get("visibility") == "private"}
                    return self._json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
                # /api/models/{org}/{name}/{action}/{revision}: the revision is URL-quoted as one segment
                parts = raw_path.strip("/").split("/")
                if len(parts) != 6 or parts[:2] != ["api", "models"]:
                    return self._error(404, "RepoNotFound", f"no endpoint {path}")
                repo_id, action, revision = f"{parts[2]}/{parts[3]}", parts[4], unquote(parts[5])
                if not hub.knows(repo_id):
                    return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                if action == "branch":
                    if (repo_id, revision) in hub.branches:
                        return self._error(409, "BranchExists", f"branch {revision} exists")
                    hub.branches.add((repo_id, revision))
                    return self._json(200, {})
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False, "oid": None} for f in files]})
                if action == "commit":
                    return self._commit(repo_id, revision, body)
                self._error(404, "RepoNotFound", f"no endpoint {path}")

            def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                if not lines or lines[0].get("key") != "header":
                    return self._error(400, "BadRequest", "the commit payload starts with a header line")
                added: dict[str, bytes] = {}
                for line in lines[1:]:
                    if line["key"] != "file" or line["value"].get("encoding") != "base64":
                        return self._error(400, "BadRequest", f"unsupported commit operation {line['key']!r}")
                    added[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                for name, data in added.items():
                    if revision == MAIN:
                        hub.files[(repo_id, name)] = data
                    else:
                        hub.revision_files[(repo_id, revision, name)] = data
                oid = hashlib.sha1(body + str(len(hub.commits)).encode()).hexdigest()
                hub.commits.append({"repo_id": repo_id, "revision": revision, "files": sorted(added), "oid": oid,
                                    "summary": lines[0]["value"].get("summary")})
                self._json(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                                 "pullRequestUrl": None})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def knows(self, repo_id: str) -> bool:
        """Whether ``repo_id`` was created or has files."""
        return repo_id in self.repos or any(r == repo_id for r, _ in self.files) \
            or any(r == repo_id for r, _, _ in self.revision_files)

    def head(self, repo_id: str) -> str:
        """The repo's last commit id (a fixed one for files put in place by ``add_folder``)."""
        oids = [c["oid"] for c in self.commits if c["repo_id"] == repo_id]
        return oids[-1] if oids else hashlib.sha1(repo_id.encode()).hexdigest()

    def add_folder(self, repo_id: str, folder: str | Path) -> None:
        for path in Path(folder).iterdir():
            self.files[(repo_id, path.name)] = path.read_bytes()

    def __enter__(self) -> MockHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
