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

from mohawk.base import Resource
from mohawk.util import calculate_mac, parse_authorization_header, strings_match, utc_now

CLIENTS = {}
STATE = {"delay": 0.0, "calls": 0}
LOCK = threading.Lock()


def authenticate(q):
    """Checks the header as Taskcluster's service does: the MAC (over the payload hash the
    header declares, without the body, which the service never sees) and the timestamp within
    15 minutes; the hash goes back to the caller to check against the body."""
    url = f"http://{q['host']}:{q['port']}{q['resource']}"
    try:
        attrs = parse_authorization_header(q["authorization"])
        c = CLIENTS.get(attrs["id"])
        if c is None:
            raise LookupError(f"client {attrs['id']} not found")
        resource = Resource(
            url=url,
            method=q["method"].upper(),
            ext=attrs.get("ext"),
            app=attrs.get("app"),
            dlg=attrs.get("dlg"),
            credentials={"id": attrs["id"], "key": c["accessToken"], "algorithm": "sha256"},
            nonce=attrs["nonce"],
            timestamp=attrs["ts"],
        )
        if not strings_match(calculate_mac("header", resource, attrs.get("hash", "")), attrs["mac"]):
            raise ValueError("MACs do not match")
        if abs(int(attrs["ts"]) - utc_now()) > 15 * 60:
            raise ValueError("timestamp outside the window")
    except Exception as e:  # noqa: BLE001 - every refusal is auth-failed, as Taskcluster answers
        return {"status": "auth-failed", "message": f"{type(e).__name__}: {e}"}
    answer = {
        "status": "auth-success",
        "scheme": "hawk",
        "clientId": attrs["id"],
        "scopes": c["scopes"] + ["assume:anonymous"],
        "expires": "2999-01-01T00:00:00.000Z",
    }
    if attrs.get("hash"):
        answer["hash"] = attrs["hash"]
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
