"""A local stand-in for the Hugging Face Hub's file endpoints, for huggingface_hub's real download code.

Serves HEAD/GET /{repo_id}/resolve/{revision}/{filename} from memory on 127.0.0.1 with the
headers hf_hub_download reads (X-Repo-Commit, ETag, Content-Length); anything else is a 404
with the Hub's X-Error-Code, as the real Hub answers.
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class MockHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _answer(self, with_body: bool) -> None:
                path = unquote(self.path.split("?", 1)[0])
                hub.requests.append((self.command, path))
                parts = path.strip("/").split("/")
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo_id, filename = "/".join(parts[:2]), "/".join(parts[4:])
                    data = hub.files.get((repo_id, filename))
                    if data is not None:
                        self.send_response(200)
                        self.send_header("Content-Type", "application/octet-stream")
                        self.send_header("Content-Length", str(len(data)))
                        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                        self.send_header("X-Repo-Commit", hashlib.sha1(repo_id.encode()).hexdigest())
                        self.end_headers()
                        if with_body:
                            self.wfile.write(data)
                        return
                    known_repo = any(r == repo_id for r, _ in hub.files)
                    code = "EntryNotFound" if known_repo else "RepoNotFound"
                else:
                    code = "RepoNotFound"
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", f"{code}: {path}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:
                self._answer(with_body=False)

            def do_GET(self) -> None:
                self._answer(with_body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_folder(self, repo_id: str, folder: str | Path) -> None:
        for path in Path(folder).iterdir():
            self.files[(repo_id, path.name)] = path.read_bytes()

    def __enter__(self) -> MockHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
