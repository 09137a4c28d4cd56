"""A stand-in for a Taskcluster deployment's auth service, for the e2e tests.

Only `POST /api/auth/v1/authenticate-hawk`, answering in Taskcluster's documented shapes
({"status": "auth-success", "clientId", "scopes", "scheme", "expires", ["hash"]} or
{"status": "auth-failed", "message"}). Hawk headers are checked with mohawk (the library
Taskcluster's Python client signs with), never with tooltool's code. The real service cannot
be installed from a package registry; this is the one test double of the suite.

Usage: tc_auth_standin.py CLIENTS_JSON   ({"<clientId>": {"accessToken": ..., "scopes": [...]}})
Prints the port it listens on (127.0.0.1), then serves until killed.
`POST /control` with {"delay": seconds} makes later answers wait that long.
Each authenticate-hawk call is counted; `GET /calls` answers the count.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mohawk

CLIENTS = {}
STATE = {"delay": 0.0, "calls": 0}
LOCK = threading.Lock()


def authenticate(q):
    def credentials(client_id):
        c = CLIENTS.get(client_id)
        if c is None:
            raise LookupError(f"client {client_id} not found")
        return {"id": client_id, "key": c["accessToken"], "algorithm": "sha256"}

    url = f"http://{q['host']}:{q['port']}{q['resource']}"
    try:
        receiver = mohawk.Receiver(
            credentials,
            q["authorization"],
            url,
            q["method"].upper(),
            accept_untrusted_content=True,
            timestamp_skew_in_seconds=15 * 60,
        )
    except Exception as e:  # noqa: BLE001 - every refusal is auth-failed, as Taskcluster answers
        return {"status": "auth-failed", "message": f"{type(e).__name__}: {e}"}
    client_id = receiver.parsed_header["id"]
    answer = {
        "status": "auth-success",
        "scheme": "hawk",
        "clientId": client_id,
        "scopes": CLIENTS[client_id]["scopes"] + ["assume:anonymous"],
        "expires": "2999-01-01T00:00:00.000Z",
    }
    if receiver.parsed_header.get("hash"):
        answer["hash"] = receiver.parsed_header["hash"]
    return answer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read(self):
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")

    def do_GET(self):
        if self.path == "/calls":
            with LOCK:
                self.reply(200, {"calls": STATE["calls"]})
        else:
            self.reply(404, {"code": "ResourceNotFound"})

    def do_POST(self):
        if self.path == "/control":
            with LOCK:
                STATE["delay"] = float(self.read().get("delay", 0))
            self.reply(200, {})
        elif self.path == "/api/auth/v1/authenticate-hawk":
            q = self.read()
            with LOCK:
                STATE["calls"] += 1
                delay = STATE["delay"]
            time.sleep(delay)
            self.reply(200, authenticate(q))
        else:
            self.reply(404, {"code": "ResourceNotFound"})


def main():
    with open(sys.argv[1]) as f:
        CLIENTS.update(json.load(f))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
