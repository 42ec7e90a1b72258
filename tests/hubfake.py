"""A local stand-in for the Hugging Face Hub's HTTP API, just enough of it for huggingface_hub's ``create_repo`` and
``upload_folder`` (every file answered as a regular upload, so the files arrive base64 in the commit). Point the
client at it with ``HF_ENDPOINT``; nothing leaves 127.0.0.1."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


class FakeHub:
    def __init__(self) -> None:
        self.repos: list[dict] = []
        self.files: dict[str, dict[str, bytes]] = {}
        self.auth: list[Optional[str]] = []
        self.commits: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, body: dict, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.auth.append(self.headers.get("Authorization"))
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    request = json.loads(body)
                    hub.repos.append(request)
                    repo = f"{request.get('organization') or 'me'}/{request['name']}"
                    return self._reply({"url": f"http://{self.headers['Host']}/{repo}"})
                if path == "/api/validate-yaml":
                    return self._reply({})
                if "/preupload/" in path:
                    files = json.loads(body)["files"]
                    return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                  for f in files]})
                if "/commit/" in path:
                    repo = path.split("/api/models/")[1].split("/commit/")[0]
                    stored = hub.files.setdefault(repo, {})
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            hub.commits.append(item["value"]["summary"])
                        elif item["key"] == "file":
                            stored[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    return self._reply({"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/1",
                                        "commitOid": "1" * 40})
                return self._reply({"error": f"fake hub: no {path}"}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
