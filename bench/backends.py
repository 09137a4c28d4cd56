"""The benchmarks' servers: tooltool-api release binaries on the embedded default, the
ceiling (baseline-302), and PostgreSQL + S3 through scripts/backends.sh; small HTTP and port
helpers."""

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import socket
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release")
PREFIX = "project:releng:services/tooltool/api"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=3600) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def sha512_file(path):
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Server:
    """A tooltool-api release binary on the embedded default in a temporary data dir."""

    def __init__(self, workdir, extra_env=None, wrapper=()):
        self.port = free_port()
        self.dir = os.path.join(workdir, f"server-{self.port}")
        os.makedirs(self.dir)
        self.env = dict(os.environ, PORT=str(self.port), TOOLTOOL_DATA_DIR=os.path.join(self.dir, "data"),
                        TOOLTOOL_VERIFY_WAIT="3600s", TOOLTOOL_MAX_BODY_BYTES="104857600")
        # The server's default log settings, as operators run it: one access-log line per request,
        # stderr to a file. A quieter configuration is measured only as a labelled extra.
        self.env.pop("RUST_LOG", None)
        self.env.pop("LOG_FORMAT", None)
        self.env.update(extra_env or {})
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([*wrapper, os.path.join(BIN, "tooltool-api")], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log"), "w"))
        wait_port(self.port, timeout=120 if wrapper else 30)
        self.token = subprocess.run([os.path.join(BIN, "tooltool-api"), "token", "issue", "--subject", "bench",
                                     "--scope", "*", "--ttl", "1d"], env=self.env, check=True,
                                    capture_output=True, text=True).stdout.strip()

    def auth(self):
        return {"Authorization": f"Bearer {self.token}"}

    def upload(self, name, path, visibility="public"):
        """POST, PUT (streamed by curl), complete; returns (digest, seconds of the complete call)."""
        digest = sha512_file(path)
        size = os.path.getsize(path)
        body = json.dumps({"message": "bench", "files": {name: {"size": size, "digest": digest, "algorithm": "sha512",
                                                                  "visibility": visibility}}}).encode()
        status, resp, _ = http("POST", self.url + "/upload", body, dict(self.auth(), **{"Content-Type": "application/json"}))
        assert status == 200, (status, resp)
        put_url = json.loads(resp)["result"]["files"][name].get("put_url")
        if put_url:
            # -T streams the file (--data-binary @file would read it all into memory).
            subprocess.run(["curl", "-sf", "-T", path, "-H", "Content-Type: application/octet-stream", put_url,
                            "-o", "/dev/null"], check=True)
        start = time.perf_counter()
        status, resp, _ = http("GET", f"{self.url}/upload/complete/sha512/{digest}")
        took = time.perf_counter() - start
        assert status == 200, (status, resp)
        return digest, took

    def peak_rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class ProductionBackends:
    """A throwaway PostgreSQL cluster and `s3` s3s-fs servers, started by scripts/backends.sh,
    the same script that starts the test backends (scripts/test.sh)."""

    def __init__(self, workdir, s3=1):
        self.dir = tempfile.mkdtemp(dir="/tmp", prefix="tooltool-bench-")
        script = os.path.join(ROOT, "scripts", "backends.sh")
        self.stop_cmd = [script, "stop", self.dir]
        subprocess.run([script, "start", self.dir, "--postgres", "--s3", str(s3)], check=True)
        coords = {}
        with open(os.path.join(self.dir, "env")) as f:
            for line in f:
                name, _, value = line.removeprefix("export ").strip().partition("=")
                coords[name] = shlex.split(value)[0] if value else ""
        self.coords = coords
        # s3s-fs: a bucket is a directory of the directory it serves.
        for suffix in ["", "_B", "_C", "_D"][:s3]:
            os.makedirs(os.path.join(coords[f"TOOLTOOL_TEST_S3_DIR{suffix}"], "tooltool"))
        self.env = {"DATABASE_URL": coords["TOOLTOOL_TEST_POSTGRES_URL"],
                    "TOOLTOOL_SECRET_KEY": "bench-secret-key-0123456789abcdef",
                    "TOOLTOOL_S3_BUCKET": "tooltool", "TOOLTOOL_S3_ENDPOINT": coords["TOOLTOOL_TEST_S3_ENDPOINT"],
                    "TOOLTOOL_S3_FORCE_PATH_STYLE": "true",
                    "TOOLTOOL_S3_ACCESS_KEY_ID": coords["TOOLTOOL_TEST_S3_ACCESS_KEY"],
                    "TOOLTOOL_S3_SECRET_ACCESS_KEY": coords["TOOLTOOL_TEST_S3_SECRET_KEY"]}
        subprocess.run([os.path.join(BIN, "tooltool-api"), "migrate"], env=dict(os.environ, **self.env), check=True,
                       stderr=subprocess.DEVNULL)

    def another_s3(self):
        """The endpoint of the second s3s-fs (same keys, a `tooltool` bucket): start with s3=2."""
        return self.coords["TOOLTOOL_TEST_S3_ENDPOINT_B"]

    def stop(self):
        subprocess.run(self.stop_cmd, check=False)


class Ceiling:
    """baseline-302: a bare actix-web handler answering every GET /sha512/{digest} with a 302."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([os.path.join(BIN, "baseline-302"), str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def url(self, digest):
        return f"http://127.0.0.1:{self.port}/sha512/{digest}"

    def stop(self):
        self.proc.terminate()
