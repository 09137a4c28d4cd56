#!/usr/bin/env python3
"""tooltool benchmarks: every figure is a ratio against a baseline measured in the same run.

Usage: python3 bench/run.py [--quick] [--only NAME ...] [--out bench/results.json]

Builds the release binaries, installs wrk if missing (apt), then runs:
  redirect   GET /sha512/<digest> under wrk (64 connections) against baseline-302, a bare
             actix-web handler returning a constant 302 (the framework ceiling), in interleaved
             pairs (ceiling, tooltool, ...), the server with its default logging to a file; also
             an internal file with a bearer token, a 404, JSON logs, the lookup cache off, and
             RUST_LOG=warn as a labelled extra. redirect_pg_s3: the same on PostgreSQL + S3.
  instructions  instructions per public redirect of the ceiling and of tooltool (default
             logging), counted by callgrind: the work done, which does not drift with the machine.
  soak       60 s of mixed load (redirects, searches, uploads) on both backends: errors, RSS
             before/peak/after, open descriptors before and after.
  propagation  two replicas on one PostgreSQL: delay from a visibility PATCH answered on one to
             the first download on the other that shows it (p50, p99 over 200 flips).
  verify     upload/complete of a 1 GiB blob (MB/s) against sha512sum of the same file.
  fetch      tooltool fetch of 100 x 1 MiB + 2 x 256 MiB, cold, from the cache, over a directory
             that already holds every file, and against a server that is down; against curl
             --parallel then sha512sum -c on both cores (or sha512sum -c alone), interleaved.
  sha512     SHA-512 MB/s of the project's implementation, aws-lc-rs and the sha2 crate, against
             openssl speed -evp sha512 (16 KiB blocks).
  memory     peak RSS of the server under redirect load and while verifying a 2 GiB upload,
             and of the client fetching a 2 GiB file.
  growth     redirect latency with 10^3, 10^5 and 10^6 files recorded.
  replication  a 1 GiB blob copied between two S3 endpoints (two s3s-fs) by `tooltool-api
             replicate` (streamed, hashed, multipart) against curl GET piped into curl PUT of the
             same bytes between the same servers (MB/s).
Each measurement is the median of several runs. Results are printed and written as JSON.
"""

import argparse
import glob
import hashlib
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
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
    """A throwaway PostgreSQL cluster and an s3s-fs server, as scripts/test.sh starts them."""

    def __init__(self, workdir):
        tools = os.environ.get("TOOLTOOL_TOOLS_DIR", os.path.expanduser("~/.cache/tooltool-tools"))
        s3s = os.path.join(tools, "bin", "s3s-fs")
        if not os.path.exists(s3s):
            log("installing s3s-fs 0.14.1 (about 3 minutes, once)")
            subprocess.run(["cargo", "install", "s3s-fs@0.14.1", "--locked", "--features", "binary", "--root", tools],
                           check=True)
        pg_bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        self.dir = tempfile.mkdtemp(dir="/tmp", prefix="tooltool-bench-")
        self.s3s_bin, self.more_s3 = s3s, []
        os.chmod(self.dir, 0o755)
        self.pg_ctl = os.path.join(pg_bin, "pg_ctl")
        pg = os.path.join(self.dir, "pg")
        os.makedirs(pg)
        as_pg = (lambda c: ["su", "postgres", "-s", "/bin/sh", "-c", c]) if os.getuid() == 0 else (lambda c: ["sh", "-c", c])
        self.as_pg = as_pg
        if os.getuid() == 0:
            shutil.chown(pg, "postgres")
        self.pg_port, s3_port = free_port(), free_port()
        subprocess.run(as_pg(f"{pg_bin}/initdb -D {pg} -U postgres --auth=trust"), check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(as_pg(f"{self.pg_ctl} -D {pg} -l {pg}/server.log -w start -o '-c listen_addresses=127.0.0.1 "
                             f"-p {self.pg_port} -k {pg} -c max_connections=200'"), check=True,
                       stdout=subprocess.DEVNULL)
        s3_dir = os.path.join(self.dir, "s3")
        os.makedirs(os.path.join(s3_dir, "tooltool"))  # s3s-fs: a bucket is a directory
        self.s3 = subprocess.Popen([s3s, "--host", "127.0.0.1", "--port", str(s3_port), "--access-key", "bench",
                                    "--secret-key", "bench-secret", s3_dir],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(s3_port)
        self.env = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.pg_port}/postgres",
                    "TOOLTOOL_SECRET_KEY": "bench-secret-key-0123456789abcdef",
                    "TOOLTOOL_S3_BUCKET": "tooltool", "TOOLTOOL_S3_ENDPOINT": f"http://127.0.0.1:{s3_port}",
                    "TOOLTOOL_S3_FORCE_PATH_STYLE": "true", "TOOLTOOL_S3_ACCESS_KEY_ID": "bench",
                    "TOOLTOOL_S3_SECRET_ACCESS_KEY": "bench-secret"}
        subprocess.run([os.path.join(BIN, "tooltool-api"), "migrate"], env=dict(os.environ, **self.env), check=True,
                       stderr=subprocess.DEVNULL)

    def another_s3(self):
        """A second s3s-fs with the same keys and a `tooltool` bucket; returns its endpoint."""
        port = free_port()
        s3_dir = os.path.join(self.dir, f"s3-{port}")
        os.makedirs(os.path.join(s3_dir, "tooltool"))
        self.more_s3.append(subprocess.Popen([self.s3s_bin, "--host", "127.0.0.1", "--port", str(port), "--access-key",
                                              "bench", "--secret-key", "bench-secret", s3_dir],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(port)
        return f"http://127.0.0.1:{port}"

    def stop(self):
        self.s3.terminate()
        for p in self.more_s3:
            p.terminate()
        subprocess.run(self.as_pg(f"{self.pg_ctl} -D {self.dir}/pg -m immediate stop"), stdout=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def sha512_file(path):
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 24)
            f.write(os.urandom(n))
            left -= n


def wrk(url, seconds, connections=64, headers=None, script=None, raw=False):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result = {"rps": rps, "p50_ms": pct(50), "p99_ms": pct(99), "non_2xx_3xx": int(non2xx.group(1)) if non2xx else 0}
    if raw:
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        result["socket_errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    return result


def median_of(runs, fn):
    results = [fn() for _ in range(runs)]
    keys = results[0].keys()
    return {k: statistics.median(r[k] for r in results) for k in keys}


def paired(a, ceiling_url, url, headers=None):
    """wrk on the ceiling, then on tooltool, `a.runs` times in turn: the ceiling drifts by +-20 %
    between runs on this machine, so each tooltool run is compared with the ceiling run just
    before it, and the figure is the median of those ratios."""
    wrk(ceiling_url, 2)  # warm up both
    wrk(url, 2, headers=headers)
    pairs = []
    for _ in range(a.runs):
        c = wrk(ceiling_url, a.seconds)
        t = wrk(url, a.seconds, headers=headers)
        pairs.append((c, t))
    ratios = [t["rps"] / c["rps"] for c, t in pairs]
    return {
        "ratio_to_ceiling": statistics.median(ratios),
        "ratios": ratios,
        "rps": statistics.median(t["rps"] for _, t in pairs),
        "p50_ms": statistics.median(t["p50_ms"] for _, t in pairs),
        "p99_ms": statistics.median(t["p99_ms"] for _, t in pairs),
        "non_2xx_3xx": sum(t["non_2xx_3xx"] for _, t in pairs),
        "ceiling_rps": statistics.median(c["rps"] for c, _ in pairs),
        "ceiling_p99_ms": statistics.median(c["p99_ms"] for c, _ in pairs),
    }


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


def small_files(work, server):
    """A public and an internal 4 KiB file on `server`: their digests."""
    path = os.path.join(work, "small.bin")
    random_file(path, 4096)
    public, _ = server.upload("public.bin", path, "public")
    random_file(path, 4096)
    internal, _ = server.upload("internal.bin", path, "internal")
    return public, internal


def redirect_variants(work, a, ceiling, variants, backend_env=None):
    """Each variant (name, extra server env, which request) measured in pairs with the ceiling."""
    out = {}
    for name, env, which in variants:
        server = Server(work, dict(backend_env or {}, **env))
        try:
            public, internal = small_files(work, server)
            digest, headers = {"public": (public, None), "internal": (internal, server.auth()),
                               "unknown": ("0" * 128, None)}[which]
            log(f"   {name}")
            out[name] = paired(a, ceiling.url(public), f"{server.url}/sha512/{digest}", headers)
            out[name]["server_peak_rss_mib"] = server.peak_rss_kib() / 1024
            out[name]["log_lines"] = sum(1 for _ in open(os.path.join(server.dir, "log")))
        finally:
            server.stop()
    return out


def bench_redirect(work, a):
    ceiling = Ceiling()
    try:
        return redirect_variants(work, a, ceiling, [
            ("public_anonymous", {}, "public"),
            ("internal_bearer", {}, "internal"),
            ("unknown_404", {}, "unknown"),
            ("public_json_logs", {"LOG_FORMAT": "json"}, "public"),
            ("public_cache_off", {"TOOLTOOL_LOOKUP_CACHE": "0"}, "public"),
            ("extra_public_rust_log_warn", {"RUST_LOG": "warn"}, "public"),
        ])
    finally:
        ceiling.stop()


def bench_redirect_pg_s3(work, a):
    backends = ProductionBackends(work)
    ceiling = Ceiling()
    try:
        return redirect_variants(work, a, ceiling, [
            ("public_anonymous", {}, "public"),
            ("internal_bearer", {}, "internal"),
            ("unknown_404", {}, "unknown"),
            ("public_cache_off", {"TOOLTOOL_LOOKUP_CACHE": "0"}, "public"),
        ], backends.env)
    finally:
        ceiling.stop()
        backends.stop()


def bench_propagation(work, a):
    """Two replicas on one PostgreSQL: 200 visibility flips PATCHed on A; for each, the time from
    A's answer to the first download on B whose status shows the change (302 <-> 403)."""
    backends = ProductionBackends(work)
    a_srv = Server(work, backends.env)
    b_srv = Server(work, backends.env)
    try:
        _, internal = small_files(work, a_srv)
        headers = dict(a_srv.auth(), **{"Content-Type": "application/json"})
        flips = 20 if a.quick else 200
        delays, visibility = [], "internal"
        for i in range(flips):
            visibility = "public" if visibility == "internal" else "internal"
            want = 302 if visibility == "public" else 403
            body = json.dumps([{"op": "set_visibility", "visibility": visibility}]).encode()
            status, resp, _ = http("PATCH", f"{a_srv.url}/file/sha512/{internal}", body, headers)
            assert status == 200, (status, resp)
            answered = time.perf_counter()
            deadline = answered + 10
            while True:
                status, _, _ = http("GET", f"{b_srv.url}/sha512/{internal}")
                if status == want:
                    delays.append((time.perf_counter() - answered) * 1000)
                    break
                assert time.perf_counter() < deadline, f"flip {i} never reached B"
        delays.sort()
        return {"flips": flips, "p50_ms": statistics.median(delays),
                "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))], "max_ms": delays[-1]}
    finally:
        a_srv.stop()
        b_srv.stop()
        backends.stop()


def soak_script(work, public):
    """Mostly redirects, some searches: 90 % GET /sha512/<public>, 5 % each search route."""
    path = os.path.join(work, "soak.lua")
    with open(path, "w") as f:
        f.write('local n = 0\nrequest = function()\n  n = n + 1\n')
        f.write('  if n % 20 == 0 then return wrk.format("GET", "/upload?q=soak") end\n')
        f.write('  if n % 20 == 10 then return wrk.format("GET", "/file?q=soak") end\n')
        f.write(f'  return wrk.format("GET", "/sha512/{public}")\nend\n')
    return path


def soak_one(work, a, env):
    """Two rounds of 60 s of mixed load on one server process: wrk (redirects and searches) plus
    a client uploading small files back to back. Per round: errors, peak and final RSS, open
    descriptors after. Memory and descriptors that stay level from the first round to the second
    show that nothing leaks."""
    import threading
    server = Server(work, env)
    try:
        public, _ = small_files(work, server)
        fds = lambda: len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        rss = lambda: int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{server.proc.pid}/status").read()).group(1))
        out = {"fds_before": fds(), "rss_mib_before": rss() / 1024, "rounds": []}
        seconds = 10 if a.quick else 60
        for round_no in range(2):
            uploads = {"ok": 0, "failed": 0}
            stop = time.monotonic() + seconds
            peak = [0]

            def uploader():
                i = 0
                while time.monotonic() < stop:
                    i += 1
                    path = os.path.join(work, f"soak-{round_no}-{i}.bin")
                    random_file(path, 64 << 10)
                    try:
                        server.upload(f"soak-{round_no}-{i}.bin", path)
                        uploads["ok"] += 1
                    except Exception as e:  # counted, the soak goes on
                        log(f"soak upload failed: {e}")
                        uploads["failed"] += 1
                    os.remove(path)

            def sampler():
                while time.monotonic() < stop + 1:
                    peak[0] = max(peak[0], rss())
                    time.sleep(0.25)

            threads = [threading.Thread(target=uploader), threading.Thread(target=sampler)]
            for t in threads:
                t.start()
            res = wrk(f"{server.url}/", seconds, script=soak_script(work, public), raw=True)
            for t in threads:
                t.join()
            time.sleep(1)
            out["rounds"].append({"seconds": seconds, "requests_per_s": res["rps"], "non_2xx_3xx": res["non_2xx_3xx"],
                                  "socket_errors": res["socket_errors"], "uploads": uploads,
                                  "rss_mib_peak": peak[0] / 1024, "rss_mib_after": rss() / 1024,
                                  "fds_after": fds()})
        return out
    finally:
        server.stop()


def bench_soak(work, a):
    out = {"embedded": soak_one(work, a, {})}
    backends = ProductionBackends(work)
    try:
        out["postgres_s3"] = soak_one(work, a, backends.env)
    finally:
        backends.stop()
    return out


def bench_verify(work, a):
    size = (1 << 30) if not a.quick else (256 << 20)
    server = Server(work)
    results = []
    try:
        for _ in range(a.runs):
            path = os.path.join(work, "blob.bin")
            random_file(path, size)
            subprocess.run(["sync"])
            subprocess.run(["cat", path], stdout=subprocess.DEVNULL)  # page cache warm for both
            start = time.perf_counter()
            subprocess.run(["sha512sum", path], check=True, stdout=subprocess.DEVNULL)
            baseline = time.perf_counter() - start
            _, took = server.upload(f"blob-{len(results)}.bin", path)
            results.append({"sha512sum_mb_s": size / baseline / 1e6, "complete_mb_s": size / took / 1e6})
            os.remove(path)
        out = {k: statistics.median(r[k] for r in results) for k in results[0]}
        out["ratio_to_sha512sum"] = out["complete_mb_s"] / out["sha512sum_mb_s"]
        out["bytes"] = size
        return out
    finally:
        server.stop()


def bench_replication(work, a):
    """A blob uploaded to region a is copied to region b on another endpoint by `tooltool-api
    replicate` (one process: start, probe, GET from a hashed on the way, multipart PUT to b, the
    ETag-pinned publish, record), against `curl GET | curl PUT` of the same bytes between the same
    two servers (to a staging URL in b). A fresh blob each run."""
    size = (1 << 30) if not a.quick else (256 << 20)
    backends = ProductionBackends(work)
    server = None
    try:
        env = dict(backends.env)
        a_endpoint, bucket = env.pop("TOOLTOOL_S3_ENDPOINT"), env.pop("TOOLTOOL_S3_BUCKET")
        env.update({"TOOLTOOL_S3_REGIONS": f"a={bucket}@{a_endpoint},b={bucket}@{backends.another_s3()}",
                    "TOOLTOOL_REPLICATION": "off"})
        server = Server(work, env)
        results = []
        for i in range(a.runs):
            path = os.path.join(work, "blob.bin")
            random_file(path, size)
            digest, _ = server.upload(f"r{i}.bin", path)
            os.remove(path)
            status, _, headers = http("GET", f"{server.url}/sha512/{digest}?region=a")
            assert status == 302, status
            get_url = {k.lower(): v for k, v in headers.items()}["location"]
            other = hashlib.sha512(os.urandom(32)).hexdigest()
            body = json.dumps({"message": "bench", "files": {"x": {"size": size, "digest": other, "algorithm": "sha512",
                                                                   "visibility": "public"}}}).encode()
            status, resp, _ = http("POST", server.url + "/upload?region=b", body,
                                   dict(server.auth(), **{"Content-Type": "application/json"}))
            assert status == 200, (status, resp)
            put_url = json.loads(resp)["result"]["files"]["x"]["put_url"]
            start = time.perf_counter()
            subprocess.run(f"curl -sf '{get_url}' | curl -sf -T - -H 'Content-Type: application/octet-stream' "
                           f"-H 'Content-Length: {size}' -o /dev/null '{put_url}'", shell=True, check=True)
            curl_s = time.perf_counter() - start
            start = time.perf_counter()
            subprocess.run([os.path.join(BIN, "tooltool-api"), "replicate"], env=server.env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            replicate_s = time.perf_counter() - start
            status, _, headers = http("GET", f"{server.url}/sha512/{digest}?region=b")
            location = {k.lower(): v for k, v in headers.items()}["location"]
            assert status == 302 and location.startswith(env["TOOLTOOL_S3_REGIONS"].split("@")[-1]), location
            results.append({"curl_pipe_mb_s": size / curl_s / 1e6, "replicate_mb_s": size / replicate_s / 1e6})
        out = {k: statistics.median(r[k] for r in results) for k in results[0]}
        out["ratio_to_curl_pipe"] = out["replicate_mb_s"] / out["curl_pipe_mb_s"]
        out["bytes"] = size
        return out
    finally:
        if server:
            server.stop()
        backends.stop()


def bench_memory(work, a):
    size = (2 << 30) if not a.quick else (512 << 20)
    server = Server(work)
    try:
        path = os.path.join(work, "big.bin")
        random_file(path, size)
        digest, _ = server.upload("big.bin", path)
        verify_rss = server.peak_rss_kib()
        dest = os.path.join(work, "client")
        os.makedirs(dest)
        manifest = os.path.join(dest, "manifest.tt")
        with open(manifest, "w") as f:
            json.dump([{"filename": "big.bin", "size": size, "algorithm": "sha512", "digest": digest}], f)
        wrapper = ("import resource,subprocess,sys;subprocess.run(sys.argv[1:],check=True);"
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", wrapper, os.path.join(BIN, "tooltool"), "-q", "--url", server.url,
                              "-m", manifest, "fetch"], cwd=dest, capture_output=True, text=True, check=True).stdout
        os.remove(path)
        return {"bytes": size, "server_peak_rss_mib_verifying": verify_rss / 1024,
                "client_peak_rss_mib_fetching": int(out.strip()) / 1024}
    finally:
        server.stop()


def bench_fetch(work, a):
    """The client against a checked download with standard tools, in interleaved pairs (baseline,
    tooltool, baseline, tooltool, ...), each figure the median of the pairs' ratios:
      cold       tooltool fetch into an empty directory, no cache
                 vs curl --parallel, then sha512sum -c on both cores;
      cache      tooltool fetch -c with every file in the cache (recorded long enough ago that
                 the records vouch), into an empty directory, vs the same baseline;
      present    tooltool fetch over a directory that already holds every valid file (fetched
                 by tooltool a second earlier), vs sha512sum -c of those files on both cores;
      down       tooltool fetch with --url a port that refuses connections: seconds to fail."""
    small, big = (100, 1 << 20), (2, 256 << 20)
    if a.quick:
        big = (2, 32 << 20)
    server = Server(work)
    try:
        src = os.path.join(work, "src")
        os.makedirs(src)
        records = []
        for count, size in (small, big):
            for i in range(count):
                name = f"f{size}-{i}.bin"
                p = os.path.join(src, name)
                random_file(p, size)
                digest, _ = server.upload(name, p)
                records.append({"filename": name, "size": size, "algorithm": "sha512", "digest": digest})
        shutil.rmtree(src)
        manifest = os.path.join(work, "manifest.tt")
        with open(manifest, "w") as f:
            json.dump(records, f)
        sums = os.path.join(work, "sums")
        with open(sums, "w") as f:
            f.writelines(f"{r['digest']}  {r['filename']}\n" for r in records)
        halves = [os.path.join(work, f"sums{i}") for i in (0, 1)]
        lines = open(sums).read().splitlines()
        for i, h in enumerate(halves):
            with open(h, "w") as f:  # one sha512sum per core, the two big files apart
                f.write("\n".join(lines[i::2]) + "\n")
        jobs = 8

        def tooltool(d, cache=None, url=None, check=True):
            cmd = [os.path.join(BIN, "tooltool"), "-q", "--url", url or server.url, "-m", manifest, "-j", str(jobs)]
            if cache:
                cmd += ["-c", cache]
            start = time.perf_counter()
            r = subprocess.run(cmd + ["fetch"], cwd=d, stderr=subprocess.PIPE, text=True)
            took = time.perf_counter() - start
            assert (r.returncode == 0) == check, r.stderr
            return took, r.stderr

        def sha512sum_both_cores(d):
            start = time.perf_counter()
            procs = [subprocess.Popen(["sha512sum", "--quiet", "-c", h], cwd=d) for h in halves]
            assert all(p.wait() == 0 for p in procs)
            return time.perf_counter() - start

        def curl_then_sha512sum():
            d = tempfile.mkdtemp(dir=work)
            cmd = ["curl", "-sfL", "--parallel", "--parallel-max", str(jobs)]
            for r in records:
                cmd += [f"{server.url}/sha512/{r['digest']}", "-o", os.path.join(d, r["filename"])]
            start = time.perf_counter()
            subprocess.run(cmd, check=True)
            curl_s = time.perf_counter() - start
            total = curl_s + sha512sum_both_cores(d)
            shutil.rmtree(d)
            return curl_s, total

        def fresh(fn):
            d = tempfile.mkdtemp(dir=work)
            took = fn(d)
            shutil.rmtree(d)
            return took

        cache = os.path.join(work, "cache")
        os.makedirs(cache)
        fresh(lambda d: tooltool(d, cache))  # fill the cache
        time.sleep(1.5)  # the records are then older than the entries' last change
        fresh(lambda d: tooltool(d, cache))
        pairs = {"cold": [], "cache": [], "present": []}
        raw = {"curl_parallel_s": [], "curl_then_sha512sum_s": [], "tooltool_cold_s": [], "tooltool_from_cache_s": [],
               "sha512sum_present_s": [], "tooltool_present_s": []}
        for _ in range(a.runs):
            curl_s, base = curl_then_sha512sum()
            cold = fresh(lambda d: tooltool(d)[0])
            pairs["cold"].append(cold / base)
            raw["curl_parallel_s"].append(curl_s)
            raw["curl_then_sha512sum_s"].append(base)
            raw["tooltool_cold_s"].append(cold)
            _, base = curl_then_sha512sum()
            cached = fresh(lambda d: tooltool(d, cache)[0])
            pairs["cache"].append(cached / base)
            raw["curl_then_sha512sum_s"].append(base)
            raw["tooltool_from_cache_s"].append(cached)
            d = tempfile.mkdtemp(dir=work)
            tooltool(d)
            time.sleep(1.5)
            base = sha512sum_both_cores(d)
            present = tooltool(d)[0]
            pairs["present"].append(present / base)
            raw["sha512sum_present_s"].append(base)
            raw["tooltool_present_s"].append(present)
            shutil.rmtree(d)
        closed = free_port()
        down_s, message = fresh(lambda d: tooltool(d, url=f"http://127.0.0.1:{closed}/", check=False))
        out = {k: statistics.median(v) for k, v in raw.items()}
        out.update({f"{k}_ratio": statistics.median(v) for k, v in pairs.items()})
        out.update({"files": len(records), "bytes": sum(r["size"] for r in records), "jobs": jobs,
                    "server_down_s": down_s, "server_down_message": message.strip(),
                    "cold_ratio_to_curl_alone": out["tooltool_cold_s"] / out["curl_parallel_s"]})
        return out
    finally:
        server.stop()


def bench_sha512(work, a):
    """SHA-512 speed on 16 KiB updates, in CPU time (openssl speed's own measure, which holds on a
    busy machine): the implementation both ends use (Sha512Counter: the AVX2 block function where
    the CPU has it), aws-lc-rs's digest and the sha2 crate, against openssl speed -evp sha512
    -bytes 16384, interleaved, median of the runs."""
    mib = 256 if a.quick else 1024

    def ours(which):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([os.path.join(BIN, "examples", "sha512_speed"), which, str(mib)], check=True,
                             capture_output=True, text=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return int(out) / cpu / 1e6

    def openssl():
        out = subprocess.run(["openssl", "speed", "-evp", "sha512", "-bytes", "16384", "-seconds", "3"],
                             capture_output=True, text=True, check=True).stdout
        row = [l for l in out.splitlines() if l.startswith("sha512")][-1]
        return float(row.split()[-1].rstrip("k")) * 1000 / 1e6

    runs = {"openssl_mb_s": [], "sha512_counter_mb_s": [], "aws_lc_mb_s": [], "sha2_crate_mb_s": []}
    ratios = []
    for _ in range(max(a.runs, 3)):
        runs["openssl_mb_s"].append(openssl())
        runs["sha512_counter_mb_s"].append(ours("ours"))
        runs["aws_lc_mb_s"].append(ours("aws-lc"))
        runs["sha2_crate_mb_s"].append(ours("sha2"))
        ratios.append(runs["sha512_counter_mb_s"][-1] / runs["openssl_mb_s"][-1])
    out = {k: statistics.median(v) for k, v in runs.items()}
    out["ratio_to_openssl"] = statistics.median(ratios)
    out["aws_lc_ratio_to_openssl"] = out["aws_lc_mb_s"] / out["openssl_mb_s"]
    out["sha2_ratio_to_openssl"] = out["sha2_crate_mb_s"] / out["openssl_mb_s"]
    return out


def seed_files(db_path, n):
    """Adds n verified public files (metadata only) straight into the SQLite store."""
    con = sqlite3.connect(db_path)
    cur = con.cursor()
    now = int(time.time())
    have = cur.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    batch = []
    for i in range(have, n):
        batch.append((hashlib.sha512(str(i).encode()).hexdigest(), 1, "public", now))
        if len(batch) == 50_000:
            cur.executemany("INSERT INTO files (digest, size, visibility, created) VALUES (?, ?, ?, ?)", batch)
            batch = []
    if batch:
        cur.executemany("INSERT INTO files (digest, size, visibility, created) VALUES (?, ?, ?, ?)", batch)
    cur.execute("INSERT OR IGNORE INTO file_instances (file_id, region, created) SELECT id, 'local', 0 FROM files")
    con.commit()
    con.close()


def spread_script(work, n, count=20_000):
    """A wrk script that asks for `count` digests picked at random among the n seeded files."""
    rng = random.Random(n)
    picks = [hashlib.sha512(str(rng.randrange(n)).encode()).hexdigest() for _ in range(count)]
    path = os.path.join(work, f"spread-{n}.lua")
    with open(path, "w") as f:
        f.write("local d = {" + ",".join(f'"{p}"' for p in picks) + "}\n")
        f.write("local i = 0\nrequest = function()\n  i = i %% %d + 1\n" % count)
        f.write('  return wrk.format("GET", "/sha512/" .. d[i])\nend\n')
    return path


def bench_growth(work, a):
    # The lookup cache off and 20,000 different digests: every request reads the database.
    server = Server(work, {"TOOLTOOL_LOOKUP_CACHE": "0"})
    server.stop()  # created the schema; seed while it is down
    db = os.path.join(server.dir, "data", "tooltool.db")
    out = {}
    sizes = [10**3, 10**5, 10**6] if not a.quick else [10**3, 10**4]
    for n in sizes:
        seed_files(db, n)
        s = Server.__new__(Server)
        s.__dict__.update(server.__dict__)
        s.proc = subprocess.Popen([os.path.join(BIN, "tooltool-api")], env=s.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_port(s.port)
        script = spread_script(work, n)
        try:
            wrk(s.url, 2, script=script)
            out[str(n)] = median_of(a.runs, lambda: wrk(s.url, a.seconds, script=script))
        finally:
            s.stop()
    first = out[str(sizes[0])]
    for n in sizes:
        out[str(n)]["p50_ratio_to_smallest"] = out[str(n)]["p50_ms"] / first["p50_ms"]
        out[str(n)]["rps_ratio_to_smallest"] = out[str(n)]["rps"] / first["rps"]
    return out


def machine():
    def cmd(*c):
        try:
            return subprocess.run(c, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except Exception:
            return "unknown"
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"model name\s*:\s*(.*)", f.read())
        cpu = m.group(1) if m else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "kernel": platform.release(), "rustc": cmd("rustc", "--version"), "wrk": cmd("wrk", "-v") or "wrk",
            "curl": cmd("curl", "--version"), "sha512sum": cmd("sha512sum", "--version")}


def callgrind_per_request(proc, url, out, seconds):
    """Instructions the process (every thread) executes per request while wrk runs, counted by
    callgrind (started with instrumentation off); and how many of them are SHA-256."""
    wrk(url, 2, connections=8)
    subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
    requests = wrk(url, seconds, connections=8)["rps"] * seconds
    subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
    proc.send_signal(signal.SIGINT)
    proc.wait()
    report = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", out], capture_output=True, text=True,
                            check=True).stdout
    total = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", report).group(1).replace(",", ""))
    sha256 = sum(int(m.group(1).replace(",", "")) for m in re.finditer(r"^\s*([\d,]+) .*sha2::sha256", report, re.M))
    return {"per_request": total / requests, "sha256_per_request": sha256 / requests}


def bench_instructions(work, a):
    """Instructions per public redirect, ceiling and tooltool (default logging), under callgrind.
    A count of work done rather than a rate, so it does not drift with this machine's neighbours;
    valgrind hides SHA-NI from sha2, so SHA-256 (the URL signature) is counted separately."""
    if shutil.which("valgrind") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True)
    seconds = 3 if a.quick else 8
    out = {}
    port = free_port()
    cg = os.path.join(work, "ceiling.callgrind")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={cg}",
                             os.path.join(BIN, "baseline-302"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, timeout=120)
    out["ceiling"] = callgrind_per_request(proc, f"http://127.0.0.1:{port}/sha512/{'0' * 128}", cg, seconds)
    cg = os.path.join(work, "tooltool.callgrind")
    server = Server(work, {}, wrapper=("valgrind", "--tool=callgrind", "--instr-atstart=no",
                                       f"--callgrind-out-file={cg}"))
    public, _ = small_files(work, server)
    out["tooltool"] = callgrind_per_request(server.proc, f"{server.url}/sha512/{public}", cg, seconds)
    out["ratio"] = out["tooltool"]["per_request"] / out["ceiling"]["per_request"]
    out["ratio_without_sha256"] = ((out["tooltool"]["per_request"] - out["tooltool"]["sha256_per_request"])
                                   / out["ceiling"]["per_request"])
    return out


BENCHES = {"redirect": bench_redirect, "instructions": bench_instructions, "redirect_pg_s3": bench_redirect_pg_s3, "propagation": bench_propagation,
           "soak": bench_soak, "verify": bench_verify, "fetch": bench_fetch, "sha512": bench_sha512,
           "memory": bench_memory, "growth": bench_growth, "replication": bench_replication}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes and shorter runs (smoke test)")
    p.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these")
    p.add_argument("--runs", type=int, default=5, help="runs (or ceiling/tooltool pairs) per measurement (median)")
    p.add_argument("--seconds", type=int, default=6, help="seconds per wrk run")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results.json"))
    p.add_argument("--no-build", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.seconds, a.runs = min(a.seconds, 3), min(a.runs, 1)
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "tooltool-api", "-p", "tooltool-cli", "-p",
                        "tooltool-bench"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "tooltool-proto", "--example", "sha512_speed"],
                       cwd=ROOT, check=True)
    results = {}
    if a.only and os.path.exists(a.out):
        # A partial run updates its figures and keeps the others of the file.
        with open(a.out) as f:
            results = json.load(f)
    results.update({"machine": machine(), "quick": a.quick, "runs": a.runs, "wrk_seconds": a.seconds})
    with tempfile.TemporaryDirectory(prefix="tooltool-bench-") as work:
        for name in a.only or list(BENCHES):
            log(f"== {name}")
            results[name] = BENCHES[name](work, a)
            log(json.dumps(results[name], indent=2))
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
