"""A small external chat backend of the README's shapes (/v1/register, /v1/chat, bearer auth), on loopback."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BACKEND_KEY = "backend-test-key"


class Backend(BaseHTTPRequestHandler):
    calls: list[tuple[str, dict]] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("Authorization") != f"Bearer {BACKEND_KEY}":
            return self._answer(401, {"detail": "Unauthorized"})
        Backend.calls.append((self.path, body))
        if self.path == "/v1/register":
            return self._answer(200, {"registration_id": f"reg-{body['model']}"})
        if self.path == "/v1/chat" and body["registration_id"].startswith("reg-"):
            return self._answer(200, {"reply": f"You said {body['message'].strip('.')}. Thank you.",
                                      "metadata": {"turns_seen": len(body["history"]) // 2 + 1}})
        return self._answer(404, {"detail": "unknown registration"})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def start() -> str:
    """Serve the backend on a free loopback port (a daemon thread); its root URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"
