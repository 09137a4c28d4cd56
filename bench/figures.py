"""The figures: how each is measured (`bench_<name>`, returning its raw numbers) and how its
raw numbers become rows of the table in BENCHMARKS.md (`rows_<name>`)."""

import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from backends import BIN, Ceiling, ProductionBackends, Server, free_port, http, log, sha512_file, wait_port

def random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 24)
            f.write(os.urandom(n))
            left -= n


def wrk(url, seconds, connections=64, headers=None, script=None, raw=False, timeout=None):
    """wrk's figures; `timeout` (s) replaces wrk's 2 s, past which a request counts as a socket error
    and not in the latencies."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"] + ([f"--timeout={timeout}s"] if timeout else [])
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
    result = {"requests": int(re.search(r"(\d+) requests in", out).group(1)), "rps": rps, "p50_ms": pct(50), "p99_ms": pct(99), "non_2xx_3xx": int(non2xx.group(1)) if non2xx else 0}
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
    replicate` (one process: start, probe, GET from a hashed on the way into one streamed PUT to b,
    record), against `curl GET | curl PUT` of the same bytes between the same
    two servers (to a staging URL in b). A fresh blob each run."""
    size = (1 << 30) if not a.quick else (256 << 20)
    backends = ProductionBackends(work, s3=2)
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


def bench_both_digests(work, a):
    """What recording sha256 beside sha512 costs the server's readers: 1 GiB in 256 KiB chunks through the one
    hasher (ContentHasher: SHA-512 inline, SHA-256 on a second thread) against SHA-512 alone (Sha512Counter),
    wall-clock time (the point of the second thread), interleaved pairs, median of the ratios."""
    mib = 256 if a.quick else 1024

    def took(which):
        start = time.perf_counter()
        out = subprocess.run([os.path.join(BIN, "examples", "sha512_speed"), which, str(mib)], check=True,
                             capture_output=True, text=True).stdout
        return int(out) / (time.perf_counter() - start) / 1e6

    pairs = []
    for _ in range(max(a.runs, 5)):
        pairs.append((took("sha512-alone"), took("both")))
    ratios = [alone / both for alone, both in pairs]
    return {"sha512_alone_mb_s": statistics.median(p[0] for p in pairs),
            "both_mb_s": statistics.median(p[1] for p in pairs), "time_ratios": ratios,
            "time_ratio": statistics.median(ratios), "bytes": mib << 20}


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


def restarted(server):
    """The same server (data dir, port, token) started again, after its database was seeded while
    it was down; its stderr goes to the same log file, as the default logging has it."""
    s = Server.__new__(Server)
    s.__dict__.update(server.__dict__)
    s.proc = subprocess.Popen([os.path.join(BIN, "tooltool-api")], env=s.env, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(s.dir, "log"), "a"))
    wait_port(s.port)
    return s


def bench_growth(work, a):
    # The lookup cache off and 20,000 different digests: every request reads the database.
    server = Server(work, {"TOOLTOOL_LOOKUP_CACHE": "0"})
    server.stop()  # created the schema; seed while it is down
    db = os.path.join(server.dir, "data", "tooltool.db")
    out = {}
    sizes = [10**3, 10**5, 10**6] if not a.quick else [10**3, 10**4]
    for n in sizes:
        seed_files(db, n)
        s = restarted(server)
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

HAWK_LUA = """
-- Each wrk thread sends its own share of the headers, each once (a Hawk nonce is single-use).
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  headers = {}
  local i = 0
  for line in io.lines(HEADERS_FILE) do
    if i % 2 == tid then headers[#headers + 1] = line end
    i = i + 1
  end
  n = 0
end
function request()
  n = n + 1
  if n > #headers then n = 1 end -- past the end a header is replayed: answered 401, counted
  return wrk.format("GET", nil, {["Authorization"] = headers[n]})
end
"""


def venv_python():
    return os.environ.get("TOOLTOOL_TEST_PYTHON") or os.path.expanduser("~/.cache/tooltool-tools/venv/bin/python")


def bench_hawk(work, a):
    """The redirect of an internal file with the Hawk header a Taskcluster task sends (temporary
    credentials issued by a registered client: certificate checked, temporary key derived, MAC,
    nonce claimed in the database), against the same client's accessToken as a Bearer token, in
    interleaved pairs on one server. Each Hawk run gets fresh headers (one per request, made by
    Taskcluster's Python client and mohawk just before it)."""
    server = Server(work)
    try:
        _, internal = small_files(work, server)
        creds_path = os.path.join(work, "ci-issuer.json")
        subprocess.run([os.path.join(BIN, "tooltool-api"), "clients", "create", "--id", "ci-issuer", "--scope",
                        "download/internal", "--output", creds_path], env=server.env, check=True,
                       capture_output=True)
        token = json.load(open(creds_path))["accessToken"]
        url = f"{server.url}/sha512/{internal}"
        bearer = {"Authorization": f"Bearer {token}"}
        scope = "project:releng:services/tooltool/api/download/internal"
        headers_file = os.path.join(work, "hawk-headers.txt")
        script = os.path.join(work, "hawk.lua")
        with open(script, "w") as f:
            f.write(f"HEADERS_FILE = {json.dumps(headers_file)}\n" + HAWK_LUA)

        def hawk_run(seconds, rps_hint):
            # Enough headers for the run and no more: making them takes time, and each must reach
            # the server within the 60 s Hawk window of its timestamp.
            n = int(rps_hint * seconds * 1.3) + 1000
            with open(headers_file, "w") as out:
                subprocess.run([venv_python(), os.path.join(os.path.dirname(__file__), "hawk_headers.py"), str(n), url,
                                "ci-issuer", token, scope], stdout=out, check=True)
            result = wrk(url, seconds, script=script)
            result["headers"] = n
            return result

        wrk(url, 2, headers=bearer)
        hint = hawk_run(2, 20_000)["rps"]
        pairs = []
        for _ in range(a.runs):
            b = wrk(url, a.seconds, headers=bearer)
            h = hawk_run(a.seconds, hint)
            hint = h["rps"]
            pairs.append((b, h))
        ratios = [h["rps"] / b["rps"] for b, h in pairs]
        return {
            "ratio_to_bearer": statistics.median(ratios),
            "ratios": ratios,
            "bearer_rps": statistics.median(b["rps"] for b, _ in pairs),
            "bearer_p99_ms": statistics.median(b["p99_ms"] for b, _ in pairs),
            "hawk_rps": statistics.median(h["rps"] for _, h in pairs),
            "hawk_p50_ms": statistics.median(h["p50_ms"] for _, h in pairs),
            "hawk_p99_ms": statistics.median(h["p99_ms"] for _, h in pairs),
            "bearer_non_2xx_3xx": sum(b["non_2xx_3xx"] for b, _ in pairs),
            "hawk_non_2xx_3xx": sum(h["non_2xx_3xx"] for _, h in pairs),
            "hawk_headers": [h["headers"] for _, h in pairs],
        }
    finally:
        server.stop()


def bench_cdn(work, a):
    """The CDN mode's redirect (a CloudFront signed URL, canned policy, SHA-256) against the plain
    S3 redirect (SigV4 presigned URL) of the same public file, PostgreSQL + S3, in interleaved
    pairs between two replicas on the same backends; an ECDSA P-256 key and an RSA-2048 key."""
    backends = ProductionBackends(work)
    servers = []
    try:
        keys = {}
        for kind, args in (("ecdsa", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                           ("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])):
            keys[kind] = os.path.join(work, f"cdn-{kind}.pem")
            subprocess.run(["openssl", "genpkey", *args, "-out", keys[kind]], check=True, capture_output=True)
        plain = Server(work, backends.env)
        servers.append(plain)
        public, _ = small_files(work, plain)
        cdn = {}
        for kind, path in keys.items():
            cdn[kind] = Server(work, dict(backends.env, TOOLTOOL_CDN_URL="https://d111111abcdef8.cloudfront.net",
                                          TOOLTOOL_CDN_KEY_ID="K2JCJMDEHXQW5F", TOOLTOOL_CDN_PRIVATE_KEY=path))
            servers.append(cdn[kind])
        path = f"/sha512/{public}"
        for kind, server in cdn.items():
            status, _, headers = http("GET", server.url + path)
            location = {k.lower(): v for k, v in headers.items()}.get("location", "")
            assert status == 302 and "cloudfront.net" in location, (kind, status, headers)
        for server in servers:
            wrk(server.url + path, 2)
        out = {}
        for kind, server in cdn.items():
            pairs = [(wrk(plain.url + path, a.seconds), wrk(server.url + path, a.seconds)) for _ in range(a.runs)]
            ratios = [c["rps"] / p["rps"] for p, c in pairs]
            out[kind] = {
                "ratio_to_s3": statistics.median(ratios),
                "ratios": ratios,
                "s3_rps": statistics.median(p["rps"] for p, _ in pairs),
                "s3_p99_ms": statistics.median(p["p99_ms"] for p, _ in pairs),
                "cdn_rps": statistics.median(c["rps"] for _, c in pairs),
                "cdn_p50_ms": statistics.median(c["p50_ms"] for _, c in pairs),
                "cdn_p99_ms": statistics.median(c["p99_ms"] for _, c in pairs),
                "non_2xx_3xx": sum(p["non_2xx_3xx"] + c["non_2xx_3xx"] for p, c in pairs),
            }
        return out
    finally:
        for server in servers:
            server.stop()
        backends.stop()


SEARCH_TOOLS = ["gcc", "clang", "rustc", "cargo", "node", "python", "sccache", "cmake", "ninja", "nasm", "wasi-sdk",
                "android-ndk", "jdk", "binutils", "llvm", "mingw", "xz", "zstd", "git", "mercurial"]
SEARCH_PLATFORMS = ["linux64", "win64", "macosx64", "android-aarch64", "linux-aarch64"]
SEARCH_EXTS = [".tar.xz", ".tar.zst", ".zip"]


def search_name(i):
    """The i-th seeded file name: a toolchain archive name as releng uploads them, unique by `i`."""
    tool = SEARCH_TOOLS[i % len(SEARCH_TOOLS)]
    version = f"{i % 17}.{i % 7}.{i % 11}"
    return f"{tool}-{version}-{SEARCH_PLATFORMS[i % 5]}-{i}{SEARCH_EXTS[i % 3]}"


def seed_names(db_path, n, per_batch=1000):
    """n files (seed_files) each named once, in batches of `per_batch` names, through the
    schema's own triggers, which fill the search indexes as the server's writes do."""
    seed_files(db_path, n)
    con = sqlite3.connect(db_path)
    cur = con.cursor()
    first = cur.execute("SELECT MIN(id) FROM files").fetchone()[0]
    now = int(time.time())
    for k in range(n // per_batch):
        i0 = k * per_batch
        batch_id = cur.execute("INSERT INTO batches (author, message, uploaded) VALUES (?, ?, ?)",
                               (f"releng-{k % 50}@mozilla.com", f"{search_name(i0)} and {per_batch - 1} more "
                                f"(bug {1800000 + k})", now)).lastrowid
        cur.executemany("INSERT INTO batch_files (batch_id, file_id, filename) VALUES (?, ?, ?)",
                        [(batch_id, first + i, search_name(i)) for i in range(i0, i0 + per_batch)])
    con.commit()
    con.close()


def search_queries(n, kind, count=2000):
    """`count` search texts of one kind: `letter` (one letter, the short path), `word` (a tool's
    name, ~1/20 of the names match), `rare` (one name matches), `none` (no name matches),
    `digest` (a 6-hex-digit digest prefix)."""
    rng = random.Random(kind)
    make = {
        "letter": lambda: rng.choice("abcdefghijklmnopqrstuvwxyz"),
        "word": lambda: rng.choice(SEARCH_TOOLS),
        "rare": lambda: f"-{rng.randrange(n)}.",
        "none": lambda: f"qz{rng.randrange(10**6)}q",
        "digest": lambda: hashlib.sha512(str(rng.randrange(n)).encode()).hexdigest()[:6],
    }[kind]
    return [make() for _ in range(count)]


def query_script(work, name, paths):
    """A wrk script that asks for each of `paths` in turn."""
    path = os.path.join(work, f"{name}.lua")
    with open(path, "w") as f:
        f.write("local d = {" + ",".join(json.dumps(p) for p in paths) + "}\n")
        f.write("local i = 0\nrequest = function()\n  i = i %% %d + 1\n" % len(paths))
        f.write('  return wrk.format("GET", d[i])\nend\n')
    return path


SEARCH_KINDS = ["letter", "word", "rare", "none", "digest"]

# The search of the release before the indexes (git 75a5f1d^1, api/src/db/files.rs), for the baseline.
UNINDEXED_SEARCH = (
    "SELECT f.id, f.digest, f.size, f.visibility, i.region FROM files f "
    "LEFT JOIN file_instances i ON i.file_id = f.id "
    "WHERE f.id IN (SELECT f2.id FROM files f2 WHERE f2.digest LIKE ?2 ESCAPE '\\' "
    "OR f2.id IN (SELECT bf.file_id FROM batch_files bf WHERE LOWER(bf.filename) LIKE ?1 ESCAPE '\\') "
    "ORDER BY f2.id LIMIT 500) ORDER BY f.id, i.region")


def unindexed_latencies(db_path, queries, budget_s):
    """Milliseconds of each of `queries` run as the unindexed search in sqlite3 itself (no HTTP,
    which favours the baseline), until `budget_s` seconds are spent."""
    con = sqlite3.connect(db_path)
    took, start = [], time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        con.execute(UNINDEXED_SEARCH, (f"%{q.lower()}%", f"{q.lower()}%")).fetchall()
        took.append((time.perf_counter() - t) * 1000)
        if time.perf_counter() - start > budget_s and len(took) >= 5:
            break
    con.close()
    return took


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def bench_search(work, a):
    """Searches at 10^6 names through the server (default settings: 4 at once, 5 s each), per
    kind of text, against the unindexed search of the release before, in sqlite3 itself; then
    public downloads alone against downloads while 32 connections search, in interleaved pairs."""
    import threading
    import urllib.parse

    n = 10**6 if not a.quick else 10**5
    server = Server(work)
    server.stop()  # created the schema; seed while it is down
    db = os.path.join(server.dir, "data", "tooltool.db")
    start = time.perf_counter()
    seed_names(db, n)
    log(f"   seeded {n} names in {time.perf_counter() - start:.0f} s")
    out = {"names": n, "kinds": {}}
    s = restarted(server)
    try:
        scripts = {}
        for kind in SEARCH_KINDS:
            queries = search_queries(n, kind)
            scripts[kind] = query_script(work, f"search-{kind}",
                                         [f"/file?q={urllib.parse.quote(q)}" for q in queries])
            # wrk waits 10 s for an answer, past the search's own 5 s limit, so that the slowest
            # searches are in the latencies instead of dropped as timeouts.
            # Each run starts after the searches of the one before have ended (a search wrk gave up
            # on keeps its slot until its own 5 s limit), so that it measures searches, not 503s.
            wrk(s.url, 2, connections=4, script=scripts[kind], timeout=10)

            def run():
                time.sleep(6)
                return wrk(s.url, a.seconds, connections=4, script=scripts[kind], timeout=10, raw=True)
            ours = median_of(a.runs, run)
            base = unindexed_latencies(db, queries, budget_s=a.seconds * 2)
            out["kinds"][kind] = {"p50_ms": ours["p50_ms"], "p99_ms": ours["p99_ms"], "rps": ours["rps"],
                                  "refused": ours["non_2xx_3xx"], "socket_errors": ours["socket_errors"], "unindexed_p50_ms": percentile(base, 50),
                                  "unindexed_p99_ms": percentile(base, 99), "unindexed_runs": len(base)}
            log(f"   {kind}: p50 {ours['p50_ms']:.2f} ms (unindexed {percentile(base, 50):.1f} ms)")
        mixed = query_script(work, "search-mixed", [line for kind in SEARCH_KINDS for line in
                                                    [f"/file?q={urllib.parse.quote(q)}" for q in
                                                     search_queries(n, kind, 400)]])
        downloads = spread_script(work, n)
        pairs = []
        for _ in range(a.runs):
            alone = wrk(s.url, a.seconds, connections=8, script=downloads, raw=True)
            load = {}
            t = threading.Thread(target=lambda: load.update(wrk(s.url, a.seconds + 2, connections=32, script=mixed, timeout=10)))
            t.start()
            time.sleep(1)
            loaded = wrk(s.url, a.seconds, connections=8, script=downloads, raw=True)
            t.join()
            pairs.append((alone, loaded, load))
        out["downloads"] = {
            "alone_rps": statistics.median(p[0]["rps"] for p in pairs),
            "alone_p99_ms": statistics.median(p[0]["p99_ms"] for p in pairs),
            "loaded_rps": statistics.median(p[1]["rps"] for p in pairs),
            "loaded_p99_ms": statistics.median(p[1]["p99_ms"] for p in pairs),
            "ratios": [p[1]["rps"] / p[0]["rps"] for p in pairs],
            "loaded_requests": sum(p[1]["requests"] for p in pairs),
            "loaded_failed": sum(p[1]["non_2xx_3xx"] + p[1]["socket_errors"] for p in pairs),
            "alone_failed": sum(p[0]["non_2xx_3xx"] + p[0]["socket_errors"] for p in pairs),
            "searches": sum(p[2]["requests"] for p in pairs),
            "searches_refused": sum(p[2]["non_2xx_3xx"] for p in pairs),
        }
        out["downloads"]["ratio"] = statistics.median(out["downloads"]["ratios"])
        return out
    finally:
        s.stop()


def _parts_upload(work, server, path, name, jobs, kill_at=None):
    """`tooltool upload` of `path` to `server` (its wall time and the client's peak RSS); with
    `kill_at` (a fraction), SIGKILLed once the server holds that share of the parts."""
    size = os.path.getsize(path)
    dest = os.path.join(work, f"up-{name}-{server.port}-{time.monotonic_ns()}")
    os.makedirs(dest)
    os.link(path, os.path.join(dest, name))
    with open(os.path.join(dest, "manifest.tt"), "w") as f:
        json.dump([{"filename": name, "size": size, "algorithm": "sha512", "digest": sha512_file(path),
                    "visibility": "public"}], f)
    with open(os.path.join(dest, "token"), "w") as f:
        f.write(server.token)
    wrapper = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")
    cmd = [sys.executable, "-c", wrapper, os.path.join(BIN, "tooltool"), "-q", "--url", server.url,
           "--authentication-file", "token", "-m", "manifest.tt", "--message", "bench", "-j", str(jobs), "upload"]
    subprocess.run(["sync"])
    start = time.perf_counter()
    errors = open(os.path.join(work, f"upload-{name}.err"), "w+")
    proc = subprocess.Popen(cmd, cwd=dest, stdout=subprocess.PIPE, stderr=errors, text=True,
                            start_new_session=True)
    killed = None
    if kill_at is not None:
        parts_dir = os.path.join(server.dir, "data", "blobs", "parts")
        count = -(-size // (64 << 20))
        while proc.poll() is None:
            held = [os.path.join(parts_dir, d, f) for d in os.listdir(parts_dir) for f in os.listdir(os.path.join(parts_dir, d))]
            if len(held) >= count * kill_at:
                # What the server has received of the parts in flight, just before the kill (it
                # discards them when the connections drop).
                incoming = os.path.join(server.dir, "data", "blobs", "incoming")
                in_flight = sum(os.path.getsize(os.path.join(incoming, f)) for f in os.listdir(incoming))
                os.killpg(proc.pid, signal.SIGKILL)
                killed = {"parts_held": len(held), "parts": count, "in_flight_bytes": in_flight}
                break
            time.sleep(0.05)
    out, _ = proc.communicate()
    took = time.perf_counter() - start
    shutil.rmtree(dest)
    if killed is not None:
        return killed
    rss, code = out.split()
    errors.seek(0)
    assert code == "0", f"tooltool upload failed ({code}): {errors.read()[-2000:]}"
    return {"seconds": took, "client_peak_rss_mib": int(rss) / 1024}


def bench_parts(work, a):
    """A 2 GiB upload by `tooltool upload` on the embedded store, verification included: in 64 MiB
    parts, 4 at once, against the same file as one PUT (a server whose threshold is above it);
    then a parts upload killed once the server holds half the parts, and the run after it."""
    size = (2 << 30) if not a.quick else (512 << 20)
    path = os.path.join(work, "parts.bin")
    random_file(path, size)
    runs = []
    try:
        for _ in range(max(1, min(a.runs, 3))):
            one = Server(work, {"TOOLTOOL_MULTIPART_THRESHOLD": str(1 << 40)})
            parts = Server(work)
            try:
                single = _parts_upload(work, one, path, "one.bin", 4)
                multi = _parts_upload(work, parts, path, "parts.bin", 4)
                runs.append({"one_put_s": single["seconds"], "parts_s": multi["seconds"],
                             "client_rss_one_put_mib": single["client_peak_rss_mib"],
                             "client_rss_parts_mib": multi["client_peak_rss_mib"],
                             "server_rss_parts_mib": parts.peak_rss_kib() / 1024})
            finally:
                one.stop()
                parts.stop()
        out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        out["client_rss_parts_mib"] = max(r["client_rss_parts_mib"] for r in runs)
        out["server_rss_parts_mib"] = max(r["server_rss_parts_mib"] for r in runs)
        out["parts_speedup"] = out["one_put_s"] / out["parts_s"]
        server = Server(work)
        try:
            killed = _parts_upload(work, server, path, "resume.bin", 4, kill_at=0.5)
            digest = sha512_file(path)
            status, resp, _ = http("POST", f"{server.url}/upload/parts/sha512/{digest}", b"", server.auth())
            assert status == 200, (status, resp)
            missing = json.loads(resp)["missing"]
            again = _parts_upload(work, server, path, "resume.bin", 4)
            # Sent twice: what the server had received of the parts in flight at the kill (then
            # discarded; the next run sends those parts whole). The next run sends only the
            # parts the server's listing misses.
            out.update({"kill_parts_held": killed["parts_held"], "kill_parts": killed["parts"],
                        "rerun_missing_parts": missing, "resent_bytes": killed["in_flight_bytes"],
                        "rerun_s": again["seconds"]})
        finally:
            server.stop()
        out["bytes"] = size
        return out
    finally:
        os.remove(path)


def bench_parts_memory(work, a):
    """Peak RSS of the client and of the server while a 10 GiB file goes up by `tooltool upload`
    in 64 MiB parts, 4 at once, on the embedded store, verification included."""
    size = (10 << 30) if not a.quick else (1 << 30)
    path = os.path.join(work, "big.bin")
    random_file(path, size)
    try:
        server = Server(work)
        try:
            up = _parts_upload(work, server, path, "big.bin", 4)
            return {"bytes": size, "seconds": up["seconds"], "client_peak_rss_mib": up["client_peak_rss_mib"],
                    "server_peak_rss_mib": server.peak_rss_kib() / 1024}
        finally:
            server.stop()
    finally:
        os.remove(path)

def bench_scrub(work, a):
    """One `tooltool-api scrub` pass over 4 x 256 MiB blobs of the embedded store (rate unlimited:
    every copy read back through sha512 and sha256, its proof recorded) against `sha512sum` of the
    same blob files, in interleaved pairs, the page cache warm for both."""
    size = (256 << 20) if not a.quick else (32 << 20)
    server = Server(work)
    try:
        path = os.path.join(work, "scrub.bin")
        digests = []
        for i in range(4):
            random_file(path, size)
            digests.append(server.upload(f"scrub-{i}.bin", path)[0])
            os.remove(path)
    finally:
        server.stop()
    blobs = [os.path.join(server.dir, "data", "blobs", "sha512", d) for d in digests]
    assert all(os.path.exists(b) for b in blobs), blobs
    scrub = [os.path.join(BIN, "tooltool-api"), "scrub", "--rate", "1000000"]
    pairs = []
    for _ in range(max(1, min(a.runs, 3))):
        subprocess.run(["cat", *blobs], stdout=subprocess.DEVNULL)
        start = time.perf_counter()
        subprocess.run(["sha512sum", *blobs], check=True, stdout=subprocess.DEVNULL)
        baseline = time.perf_counter() - start
        subprocess.run(["cat", *blobs], stdout=subprocess.DEVNULL)
        start = time.perf_counter()
        out = subprocess.run(scrub, env=server.env, check=True, capture_output=True, text=True).stdout
        took = time.perf_counter() - start
        assert "copies checked: 4" in out, out
        pairs.append((baseline, took))
    total = 4 * size
    ratios = [b / t for b, t in pairs]
    return {"bytes": total, "sha512sum_mb_s": statistics.median(total / b / 1e6 for b, _ in pairs),
            "scrub_mb_s": statistics.median(total / t / 1e6 for _, t in pairs), "ratios": ratios,
            "ratio_to_sha512sum": statistics.median(ratios)}

def bench_scrub_redirect(work, a):
    """The redirect of a public file (embedded default, wrk, 64 connections) while `tooltool-api scrub`
    reads the store at its default rate (TOOLTOOL_SCRUB_RATE, 10 MB/s), against no scrub, in
    interleaved pairs. The store holds 16 x 32 MiB blobs, more than a run reads; each run's pass is
    killed when wrk ends (the copies it had claimed stay claimed for their lease, so the next pass
    reads others)."""
    size = (32 << 20) if not a.quick else (4 << 20)
    server = Server(work)
    try:
        path = os.path.join(work, "scrubbed.bin")
        for i in range(16):
            random_file(path, size)
            server.upload(f"scrubbed-{i}.bin", path)
        os.remove(path)
        public, _ = small_files(work, server)
        url = f"{server.url}/sha512/{public}"
        scrub = [os.path.join(BIN, "tooltool-api"), "scrub"]
        wrk(url, 2)
        pairs = []
        for _ in range(a.runs):
            alone = wrk(url, a.seconds)
            proc = subprocess.Popen(scrub, env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(1)
                assert proc.poll() is None, "the scrub pass ended before the run"
                beside = wrk(url, a.seconds)
                assert proc.poll() is None, "the scrub pass ended during the run"
            finally:
                proc.kill()
                proc.wait()
            pairs.append((alone, beside))
        ratios = [b["rps"] / n["rps"] for n, b in pairs]
        return {"ratio_to_none": statistics.median(ratios), "ratios": ratios,
                "none_rps": statistics.median(n["rps"] for n, _ in pairs),
                "scrub_rps": statistics.median(b["rps"] for _, b in pairs),
                "none_p99_ms": statistics.median(n["p99_ms"] for n, _ in pairs),
                "scrub_p99_ms": statistics.median(b["p99_ms"] for _, b in pairs),
                "non_2xx_3xx": sum(n["non_2xx_3xx"] + b["non_2xx_3xx"] for n, b in pairs),
                "blob_bytes": size, "blobs": 16}
    finally:
        server.stop()

def tuf_get(server, path):
    """GET a metadata file of the public repository: its bytes and its JSON."""
    status, body, _ = http("GET", f"{server.url}/tuf/public/metadata/{path}")
    assert status == 200, (path, status, body[:200])
    return body, json.loads(body)


def tuf_lookup(server, digest):
    """What a lazy TUF client reads to look `digest` up in public, as the project's client does:
    the timestamp, the snapshot it names, `targets.json`, the one bin the name hashes to. Whether
    the bin lists it, and each file's bytes."""
    ts, ts_json = tuf_get(server, "timestamp.json")
    snap, snap_json = tuf_get(server, f"{ts_json['signed']['meta']['snapshot.json']['version']}.snapshot.json")
    meta = snap_json["signed"]["meta"]
    targets, _ = tuf_get(server, f"{meta['targets.json']['version']}.targets.json")
    name = "bins-%02x" % hashlib.sha256(digest.encode()).digest()[0]
    bin_, bin_json = tuf_get(server, f"{meta[name + '.json']['version']}.{name}.json")
    sizes = {"timestamp": len(ts), "snapshot": len(snap), "targets": len(targets), "bin": len(bin_)}
    return digest in bin_json["signed"]["targets"], sizes


def seed_targets(db_path, n):
    """seed_files, with a sha256 on each row, so that every seeded file is a TUF target."""
    seed_files(db_path, n)
    con = sqlite3.connect(db_path)
    con.create_function("fake_sha256", 1, lambda d: hashlib.sha256(d.encode()).hexdigest())
    con.execute("UPDATE files SET sha256 = fake_sha256(digest) WHERE sha256 IS NULL")
    con.commit()
    con.close()


def bench_tuf(work, a):
    """Signed metadata on the embedded default: (a) for 200 uploads in turn, the time from the
    verified upload's answer to the first public timestamp whose bin lists it; (b) 100,000 files
    seeded into SQLite (with a sha256, no event), `tooltool-api tuf rescan`, then the time from
    the restarted server's port to a timestamp whose bins list them all; (c) at that size, the
    bytes a lazy client reads to look one target up, against those of every bin."""
    server = Server(work)
    try:
        deadline = time.perf_counter() + 30
        while http("GET", f"{server.url}/tuf/public/metadata/timestamp.json")[0] != 200:
            assert time.perf_counter() < deadline, "public was never signed"
            time.sleep(0.1)
        path = os.path.join(work, "tuf.bin")
        uploads = 20 if a.quick else 200
        delays = []
        for i in range(uploads):
            random_file(path, 4096)
            digest, _ = server.upload(f"tuf-{i}.bin", path, "public")
            answered = time.perf_counter()
            while not tuf_lookup(server, digest)[0]:
                assert time.perf_counter() < answered + 30, f"upload {i} was never signed"
                time.sleep(0.02)
            delays.append((time.perf_counter() - answered) * 1000)
        delays.sort()
        out = {"uploads": uploads, "p50_ms": statistics.median(delays),
               "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))], "max_ms": delays[-1]}
        before = tuf_get(server, "timestamp.json")[1]["signed"]["version"]
    finally:
        server.stop()

    n = 10**4 if a.quick else 10**5
    db = os.path.join(server.dir, "data", "tooltool.db")
    seed_targets(db, n)
    subprocess.run([os.path.join(BIN, "tooltool-api"), "tuf", "rescan"], env=server.env, check=True,
                   capture_output=True)
    s = restarted(server)
    try:
        started = time.perf_counter()
        while tuf_get(s, "timestamp.json")[1]["signed"]["version"] == before:
            assert time.perf_counter() < started + 600, "the rescan was never signed"
            time.sleep(0.05)
        signed_s = time.perf_counter() - started
        _, snap = tuf_get(s, f"{tuf_get(s, 'timestamp.json')[1]['signed']['meta']['snapshot.json']['version']}.snapshot.json")
        bins = {name: m["version"] for name, m in snap["signed"]["meta"].items() if name.startswith("bins-")}
        listed, every_bin = 0, 0
        for name, version in bins.items():
            body, parsed = tuf_get(s, f"{version}.{name}")
            listed += len(parsed["signed"]["targets"])
            every_bin += len(body)
        assert listed >= n, f"{listed} targets signed of {n} seeded"
        out.update({"files": listed, "signed_s": signed_s, "files_per_s": listed / signed_s})
        # seed_files numbers its rows after those present (the uploads): look up the later half.
        lookups = [tuf_lookup(s, hashlib.sha512(str(i).encode()).hexdigest()) for i in range(n - 1, n // 2, -(n // 100))]
        assert all(found for found, _ in lookups), "every seeded file is a target"
        totals = sorted(sum(sizes.values()) for _, sizes in lookups)
        first = lookups[0][1]
        out.update({"lookup_p50_bytes": statistics.median(totals), "lookup_max_bytes": totals[-1],
                    "lookup_parts": first, "every_bin_bytes": every_bin,
                    "eager_bytes": first["timestamp"] + first["snapshot"] + first["targets"] + every_bin})
        out["lookup_ratio_to_eager"] = out["lookup_max_bytes"] / out["eager_bytes"]
        return out
    finally:
        s.stop()


BENCHES = {"redirect": bench_redirect, "instructions": bench_instructions, "redirect_pg_s3": bench_redirect_pg_s3, "propagation": bench_propagation,
           "soak": bench_soak, "verify": bench_verify, "fetch": bench_fetch, "sha512": bench_sha512,
           "memory": bench_memory, "growth": bench_growth, "replication": bench_replication,
           "hawk": bench_hawk, "cdn": bench_cdn, "search": bench_search, "parts": bench_parts,
           "parts_memory": bench_parts_memory, "scrub": bench_scrub, "scrub_redirect": bench_scrub_redirect,
           "tuf": bench_tuf, "both_digests": bench_both_digests}


# --- How each figure's raw numbers read in BENCHMARKS.md -------------------------------------

def _n(x):
    return f"{x:,.0f}"


def _met(*checks):
    """`yes`, `no`, or each check's verdict when they differ (`ratio yes; p99 no`)."""
    if all(ok for _, ok in checks):
        return "yes"
    if len(checks) == 1 or not any(ok for _, ok in checks):
        return "no"
    return "; ".join(f"{what} {'yes' if ok else 'no'}" for what, ok in checks)


def _row(figure, baseline, ours, ratio, target="", met=""):
    return {"figure": figure, "baseline": baseline, "ours": ours, "ratio": ratio, "target": target, "met": met}


REDIRECT_VARIANTS = {
    "public_anonymous": "public file, anonymous",
    "internal_bearer": "internal file, bearer token",
    "unknown_404": "unknown digest (404)",
    "public_json_logs": "public, `LOG_FORMAT=json`",
    "public_cache_off": "public, lookup cache off",
    "extra_public_rust_log_warn": "extra: public, `RUST_LOG=warn` (no access log)",
}


def _redirect_rows(raw, backend, min_ratio):
    rows = []
    for key, label in REDIRECT_VARIANTS.items():
        if key not in raw:
            continue
        v = raw[key]
        ratios = ", ".join(f"{r:.2f}" for r in v["ratios"])
        target, met = "", ""
        if key == "public_anonymous":
            target = f"≥ {min_ratio}×, p99 < 5 ms"
            met = _met(("ratio", v["ratio_to_ceiling"] >= min_ratio), ("p99", v["p99_ms"] < 5))
        rows.append(_row(f"redirect, {backend}, {label} (wrk, 64 connections)",
                         f"bare actix-web 302: {_n(v['ceiling_rps'])} req/s, p99 {v['ceiling_p99_ms']:.2f} ms",
                         f"{_n(v['rps'])} req/s, p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms",
                         f"**{v['ratio_to_ceiling']:.2f}×** ({ratios})", target, met))
    if "public_anonymous" in raw and "server_peak_rss_mib" in raw["public_anonymous"]:
        rss = raw["public_anonymous"]["server_peak_rss_mib"]
        rows.append(_row(f"peak RSS of the server under redirect load, {backend}", "", f"{rss:.1f} MiB", "",
                         "≤ 64 MiB", _met(("", rss <= 64))))
    return rows


def rows_redirect(raw):
    return _redirect_rows(raw, "embedded", 0.7)


def rows_redirect_pg_s3(raw):
    return _redirect_rows(raw, "PostgreSQL + S3", 0.5)


def rows_instructions(raw):
    c, t = raw["ceiling"], raw["tooltool"]
    return [_row("instructions per public redirect, embedded (callgrind, every thread)",
                 f"bare actix-web 302: {_n(c['per_request'])}",
                 f"{_n(t['per_request'])}, of which SHA-256 {_n(t['sha256_per_request'])}",
                 f"{raw['ratio']:.2f}×; **{raw['ratio_without_sha256']:.2f}×** without SHA-256")]


def rows_propagation(raw):
    return [_row(f"cross-replica propagation of a visibility change ({raw['flips']} flips, two replicas, "
                 "one PostgreSQL)", "", f"p50 {raw['p50_ms']:.1f} ms, p99 {raw['p99_ms']:.1f} ms, "
                 f"max {raw['max_ms']:.1f} ms", "", "p99 < 50 ms", _met(("", raw["p99_ms"] < 50)))]


def rows_soak(raw):
    rows = []
    for key, label in (("embedded", "embedded"), ("postgres_s3", "PostgreSQL + S3")):
        if key not in raw:
            continue
        s = raw[key]
        rounds = s["rounds"]
        errors = sum(r["non_2xx_3xx"] + r["socket_errors"] + r["uploads"]["failed"] for r in rounds)
        rss = " → ".join(f"{r['rss_mib_after']:.1f}" for r in rounds)
        fds = " → ".join(str(r["fds_after"]) for r in rounds)
        rps = " / ".join(_n(r["requests_per_s"]) for r in rounds)
        level = rounds[-1]["fds_after"] == rounds[0]["fds_after"]
        rows.append(_row(f"soak, {label}: {len(rounds)} rounds of {rounds[0]['seconds']} s (90 % redirects, "
                         "10 % searches, uploads)",
                         f"start: {s['rss_mib_before']:.1f} MiB, {s['fds_before']} descriptors",
                         f"{rps} req/s; errors {errors}; RSS after each round {rss} MiB; descriptors {fds}", "",
                         "no errors, descriptors level", _met(("errors", errors == 0), ("descriptors", level))))
    return rows


def rows_verify(raw):
    return [_row(f"upload verification (`upload/complete`), {raw['bytes'] >> 20} MiB",
                 f"sha512sum: {raw['sha512sum_mb_s']:.0f} MB/s", f"{raw['complete_mb_s']:.0f} MB/s",
                 f"**{raw['ratio_to_sha512sum']:.2f}×**", "≥ 0.85×", _met(("", raw["ratio_to_sha512sum"] >= 0.85)))]


def rows_fetch(raw):
    what = f"{raw['files']} files, {raw['bytes'] / 1e6:.0f} MB, -j {raw['jobs']}"
    base = f"curl --parallel, then `sha512sum -c` on both cores: {raw['curl_then_sha512sum_s']:.2f} s"
    return [
        _row(f"client fetch, cold ({what})", base, f"{raw['tooltool_cold_s']:.2f} s",
             f"**{raw['cold_ratio']:.2f}×**", "≤ 0.8×", _met(("", raw["cold_ratio"] <= 0.8))),
        _row("client fetch, every file in the cache", "same", f"{raw['tooltool_from_cache_s']:.2f} s",
             f"**{raw['cache_ratio']:.2f}×**", "≤ 0.25×", _met(("", raw["cache_ratio"] <= 0.25))),
        _row("client fetch over a directory that holds every valid file",
             f"`sha512sum -c` on both cores: {raw['sha512sum_present_s']:.2f} s",
             f"{raw['tooltool_present_s']:.3f} s", f"**{raw['present_ratio']:.3f}×**", "≤ 0.1×",
             _met(("", raw["present_ratio"] <= 0.1))),
        _row("client fetch, the server refusing connections", "tooltool.py: 0.4 s",
             f"{raw['server_down_s']:.2f} s, one message", "", "≤ 10 s", _met(("", raw["server_down_s"] <= 10))),
        _row("client fetch, cold, against curl --parallel alone",
             f"curl --parallel: {raw['curl_parallel_s']:.2f} s", f"{raw['tooltool_cold_s']:.2f} s",
             f"{raw['cold_ratio_to_curl_alone']:.2f}×"),
    ]


def rows_sha512(raw):
    return [_row("SHA-512, 16 KiB updates, CPU time", f"`openssl speed -evp sha512`: {raw['openssl_mb_s']:.0f} MB/s",
                 f"ours (AVX2 block function): {raw['sha512_counter_mb_s']:.0f} MB/s; aws-lc-rs "
                 f"{raw['aws_lc_mb_s']:.0f}; sha2 crate {raw['sha2_crate_mb_s']:.0f}",
                 f"**{raw['ratio_to_openssl']:.2f}×** (aws-lc-rs {raw['aws_lc_ratio_to_openssl']:.2f}×, "
                 f"sha2 {raw['sha2_ratio_to_openssl']:.2f}×)", "≥ 0.95×",
                 _met(("", raw["ratio_to_openssl"] >= 0.95)))]


def rows_memory(raw):
    gib = raw["bytes"] >> 30
    return [_row(f"peak RSS of the server verifying a {gib} GiB upload", "",
                 f"{raw['server_peak_rss_mib_verifying']:.1f} MiB", "", "≤ 64 MiB",
                 _met(("", raw["server_peak_rss_mib_verifying"] <= 64))),
            _row(f"peak RSS of the client fetching a {gib} GiB file", "",
                 f"{raw['client_peak_rss_mib_fetching']:.1f} MiB", "", "≤ 64 MiB",
                 _met(("", raw["client_peak_rss_mib_fetching"] <= 64)))]


def rows_growth(raw):
    sizes = sorted(raw, key=int)
    first = raw[sizes[0]]
    rest = [raw[s] for s in sizes[1:]]
    exp = {s: f"10{''.join('⁰¹²³⁴⁵⁶⁷⁸⁹'[int(d)] for d in str(len(s) - 1))}" for s in sizes}
    worst = max(r["p50_ratio_to_smallest"] for r in rest)
    return [_row(f"redirect p50 with {' / '.join(exp[s] for s in sizes)} files recorded (lookup cache off, "
                 "20,000 different digests)",
                 f"{exp[sizes[0]]} files: p50 {first['p50_ms']:.2f} ms, {_n(first['rps'])} req/s",
                 "; ".join(f"{exp[s]}: p50 {raw[s]['p50_ms']:.2f} ms, {_n(raw[s]['rps'])} req/s" for s in sizes[1:]),
                 " / ".join(f"**{r['p50_ratio_to_smallest']:.2f}×**" for r in rest), "flat within 10 %",
                 _met(("", worst <= 1.10)))]


def rows_replication(raw):
    return [_row(f"replication of a {raw['bytes'] >> 20} MiB blob across endpoints (two s3s-fs), "
                 "`tooltool-api replicate`", f"`curl GET | curl PUT` between the same servers: "
                 f"{raw['curl_pipe_mb_s']:.1f} MB/s", f"{raw['replicate_mb_s']:.1f} MB/s",
                 f"**{raw['ratio_to_curl_pipe']:.2f}×**", "≥ 0.9×", _met(("", raw["ratio_to_curl_pipe"] >= 0.9)))]


def rows_cdn(raw):
    rows = []
    for kind, label in (("ecdsa", "ECDSA P-256 key"), ("rsa", "RSA-2048 key")):
        if kind not in raw:
            continue
        v = raw[kind]
        ratios = ", ".join(f"{r:.2f}" for r in v["ratios"])
        rows.append(_row(f"redirect through the CDN (CloudFront signed URL, {label}), PostgreSQL + S3, public file "
                         "(wrk, 64 connections)",
                         f"plain S3 presigned redirect: {_n(v['s3_rps'])} req/s, p99 {v['s3_p99_ms']:.2f} ms",
                         f"{_n(v['cdn_rps'])} req/s, p50 {v['cdn_p50_ms']:.2f} ms, p99 {v['cdn_p99_ms']:.2f} ms",
                         f"**{v['ratio_to_s3']:.2f}×** ({ratios})"))
    return rows


def rows_hawk(raw):
    ratios = ", ".join(f"{r:.2f}" for r in raw["ratios"])
    return [_row("redirect of an internal file, embedded, Taskcluster temporary credentials (Hawk: certificate, "
                 "derived key, MAC, nonce claimed) (wrk, 64 connections)",
                 f"the issuing client's accessToken as Bearer: {_n(raw['bearer_rps'])} req/s, "
                 f"p99 {raw['bearer_p99_ms']:.2f} ms",
                 f"{_n(raw['hawk_rps'])} req/s, p50 {raw['hawk_p50_ms']:.2f} ms, p99 {raw['hawk_p99_ms']:.2f} ms; "
                 f"refused: {raw['hawk_non_2xx_3xx']} Hawk, {raw['bearer_non_2xx_3xx']} Bearer",
                 f"**{raw['ratio_to_bearer']:.2f}×** ({ratios})")]


def rows_search(raw):
    labels = {"letter": "one letter a–z", "word": "a tool's name (1/20 of the names)", "rare": "one name's number",
              "none": "a text no name has", "digest": "a 6-digit digest prefix"}
    rows = []
    for kind, label in labels.items():
        v = raw["kinds"][kind]
        rows.append(_row(f"search `GET /file?q=` at {raw['names']:,} names, {label} (wrk, 4 connections)",
                         f"the unindexed search of the release before, in sqlite3 itself: p50 {v['unindexed_p50_ms']:.1f} ms, "
                         f"p99 {v['unindexed_p99_ms']:.1f} ms",
                         f"p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms, {_n(v['rps'])} searches/s; refused "
                         f"{v['refused']}, unanswered {v['socket_errors']}",
                         f"**{v['p50_ms'] / v['unindexed_p50_ms']:.3f}×** (p50)", "p99 < 100 ms",
                         _met(("", v["p99_ms"] < 100 and v["refused"] + v["socket_errors"] == 0))))
    d = raw["downloads"]
    ratios = ", ".join(f"{r:.2f}" for r in d["ratios"])
    rows.append(_row(f"public downloads (8 connections) while 32 connections search, {raw['names']:,} names",
                     f"downloads alone: {_n(d['alone_rps'])} req/s, p99 {d['alone_p99_ms']:.2f} ms",
                     f"{_n(d['loaded_rps'])} req/s, p99 {d['loaded_p99_ms']:.2f} ms; {d['loaded_failed']} of "
                     f"{_n(d['loaded_requests'])} downloads failed; {_n(d['searches_refused'])} of {_n(d['searches'])} "
                     "searches refused 503", f"**{d['ratio']:.2f}×** ({ratios})", "0 downloads failed",
                     _met(("", d["loaded_failed"] == 0))))
    return rows
def rows_parts(raw):
    gib = raw["bytes"] / (1 << 30)
    size = raw["bytes"]
    return [_row(f"`tooltool upload` of a {gib:g} GiB file, verified: 64 MiB parts, `-j 4`, vs one PUT",
                 f"{raw['one_put_s']:.1f} s", f"{raw['parts_s']:.1f} s", f"{raw['parts_speedup']:.2f}x", "", ""),
            _row(f"bytes sent again after a kill at 50 % ({raw['kill_parts_held']} of {raw['kill_parts']} parts held)",
                 f"{size / (1 << 20):,.0f} MiB (the file)", f"{raw['resent_bytes'] / (1 << 20):,.1f} MiB",
                 f"{raw['resent_bytes'] / size:.3f}x", "≤ one part (64 MiB)",
                 _met(("", raw["resent_bytes"] <= 64 << 20))),
            _row(f"peak RSS while a {gib:g} GiB file goes up in parts: client, server", "",
                 f"{raw['client_rss_parts_mib']:.1f} MiB, {raw['server_rss_parts_mib']:.1f} MiB", "", "≤ 64 MiB each",
                 _met(("client", raw["client_rss_parts_mib"] <= 64), ("server", raw["server_rss_parts_mib"] <= 64)))]


def rows_parts_memory(raw):
    gib = raw["bytes"] >> 30
    return [_row(f"peak RSS while a {gib} GiB file goes up in parts (`tooltool upload`, 64 MiB parts, -j 4, embedded, "
                 "verification included)", "",
                 f"client {raw['client_peak_rss_mib']:.1f} MiB, server {raw['server_peak_rss_mib']:.1f} MiB "
                 f"({raw['seconds']:.0f} s)", "", "≤ 64 MiB each",
                 _met(("client", raw["client_peak_rss_mib"] <= 64), ("server", raw["server_peak_rss_mib"] <= 64)))]

def rows_scrub(raw):
    ratios = ", ".join(f"{r:.2f}" for r in raw["ratios"])
    return [_row(f"scrub pass (`tooltool-api scrub`, rate unlimited), embedded, 4 × {raw['bytes'] >> 22} MiB",
                 f"`sha512sum` of the same blob files: {raw['sha512sum_mb_s']:.0f} MB/s",
                 f"{raw['scrub_mb_s']:.0f} MB/s (sha512 and sha256, proofs recorded)",
                 f"**{raw['ratio_to_sha512sum']:.2f}×** ({ratios})")]

def rows_scrub_redirect(raw):
    ratios = ", ".join(f"{r:.3f}" for r in raw["ratios"])
    return [_row(f"redirect, embedded, while `tooltool-api scrub` reads {raw['blobs']} × {raw['blob_bytes'] >> 20} MiB "
                 "at its default rate (10 MB/s)",
                 f"no scrub: {raw['none_rps']:,.0f} req/s, p99 {raw['none_p99_ms']:.2f} ms",
                 f"{raw['scrub_rps']:,.0f} req/s, p99 {raw['scrub_p99_ms']:.2f} ms",
                 f"**{raw['ratio_to_none']:.3f}×** ({ratios})", "≥ 0.95×",
                 _met(("ratio", raw["ratio_to_none"] >= 0.95), ("errors", raw["non_2xx_3xx"] == 0)))]


def rows_both_digests(raw):
    ratios = ", ".join(f"{r:.2f}" for r in raw["time_ratios"])
    return [_row(f"sha256 beside sha512: {raw['bytes'] >> 20} MiB in 256 KiB chunks through the one hasher "
                 "(ContentHasher), wall clock", f"SHA-512 alone (Sha512Counter): {raw['sha512_alone_mb_s']:.0f} MB/s",
                 f"{raw['both_mb_s']:.0f} MB/s, both digests", f"**{raw['time_ratio']:.2f}×** the time ({ratios})",
                 "≤ 1.1×", _met(("", raw["time_ratio"] <= 1.1)))]


def rows_tuf(raw):
    parts = raw["lookup_parts"]
    return [
        _row(f"TUF: from a verified upload's answer to a public timestamp whose bin lists it ({raw['uploads']} uploads "
             "in turn, embedded)", "the signer's coalescing window: 1,000 ms",
             f"p50 {raw['p50_ms']:.0f} ms, p99 {raw['p99_ms']:.0f} ms, max {raw['max_ms']:.0f} ms",
             f"**{raw['p50_ms'] / 1000:.2f}×** (p50)"),
        _row(f"TUF: signing {raw['files']:,} files backfilled (seeded into SQLite, `tuf rescan`, server restarted): "
             "from its port to the timestamp listing them", "",
             f"{raw['signed_s']:.1f} s, {_n(raw['files_per_s'])} files/s (256 bins, snapshot, timestamp, one "
             "transaction)", ""),
        _row(f"TUF: metadata a lazy client reads to look one target up at {raw['files']:,} files (timestamp + "
             "snapshot + targets + one bin)",
             f"every bin too (an eager client): {raw['eager_bytes'] / 1000:,.0f} KB",
             f"p50 {raw['lookup_p50_bytes'] / 1000:.0f} KB, max {raw['lookup_max_bytes'] / 1000:.0f} KB (timestamp "
             f"{parts['timestamp']:,} B, snapshot {parts['snapshot'] / 1000:.0f} KB, targets "
             f"{parts['targets'] / 1000:.0f} KB, a bin {parts['bin'] / 1000:.0f} KB)",
             f"**{raw['lookup_ratio_to_eager']:.3f}×**", "≤ 300 KB", _met(("", raw["lookup_max_bytes"] <= 300_000))),
    ]


ROWS = {name: globals()[f"rows_{name}"] for name in BENCHES}
ORDER = ["redirect", "redirect_pg_s3", "instructions", "propagation", "soak", "verify", "fetch", "sha512", "memory",
         "growth", "search", "replication", "hawk", "cdn", "parts", "parts_memory", "scrub", "scrub_redirect", "tuf",
         "both_digests"]
assert sorted(ORDER) == sorted(BENCHES), "every figure has its place in the table"

TITLES = {
    "redirect": "Redirect, embedded",
    "redirect_pg_s3": "Redirect, PostgreSQL + S3",
    "instructions": "Instructions per redirect",
    "propagation": "Cross-replica propagation",
    "soak": "Soak",
    "verify": "Upload verification",
    "fetch": "Client fetch",
    "sha512": "SHA-512",
    "memory": "Memory",
    "growth": "Growth with the catalogue",
    "replication": "Replication across endpoints",
    "hawk": "Redirect with Taskcluster credentials",
    "cdn": "Redirect through the CDN",
    "search": "Search",
    "parts": "Uploads in parts",
    "parts_memory": "Memory of an upload in parts",
    "scrub": "Scrub",
    "scrub_redirect": "Redirect beside a scrub",
    "tuf": "Signed metadata (TUF)",
    "both_digests": "sha256 beside sha512",
}

# At most three lines per figure on what limits it (the analysis behind them is in git history).
LIMITS = {
    "redirect": [
        "The kernel's TCP send and receive and actix's parsing and routing, the same as in the ceiling; ours is the "
        "access line, the URL's HMAC, the request id, the lookup cache and two labelled metric lookups.",
        "p99 < 5 ms is out of reach on 2 cores: the bare ceiling's own p99 under the same load is 4.3–5.9 ms, since "
        "wrk, the server's two workers and the log writer share them; ours is 0.5–1 ms above it.",
        "With the lookup cache off, each SQLite read takes and releases WAL read locks and starts a transaction.",
    ],
    "redirect_pg_s3": [
        "The SigV4 presignature (a SHA-256 of a ~400-byte canonical request and one HMAC) against one HMAC, and "
        "PostgreSQL and s3s-fs sharing the two cores; with the cache on, PostgreSQL is off the hot path.",
        "With the cache off, a network round trip to PostgreSQL per request: the database is the limit.",
    ],
    "instructions": [
        "Valgrind hides SHA-NI from the sha2 crate, so the URL's HMAC-SHA256 runs portable code (~14k "
        "instructions) under callgrind; natively it is about 1 % of the CPU: compare without SHA-256.",
        "The rest above the ceiling: access line (~1.2k), URL and HMAC, request id, lookup cache, caller and scope "
        "check, metric lookups (~0.7k), route lookup for the metric label (~0.7k), timeout timer.",
    ],
    "propagation": [
        "One NOTIFY per write, delivered when the change commits; the replica's listener drops the digest on "
        "arrival. The figure is PostgreSQL's delivery and the polling client's own latency.",
    ],
    "soak": [
        "The growth in the first minute is the pools filling (SQLite readers, PostgreSQL connections, S3 "
        "clients); descriptors are level after it.",
        "RSS and the request rate move with the search answers, which grow with every batch the soak uploads "
        "(`GET /upload?q=soak` matches them all).",
    ],
    "verify": [
        "SHA-512 on a CPU without SHA-512 instructions (AVX2 block function, one core); the rate includes the "
        "HTTP round trip and both renames.",
    ],
    "fetch": [
        "Cold: SHA-512 itself (~680 MB/s per core), hashed on each file's own thread while the bytes arrive, on "
        "cores shared with the server and the transfer.",
        "Cache and present: an entry or file whose record (size, times, inode) still matches is not hashed "
        "again; anything else is.",
        "Server down: three tries (0.5 s, 1 s), then the server is given up for the run, with one message.",
    ],
    "sha512": [
        "OpenSSL's AVX2 + BMI2 block function from AWS-LC's perlasm (`$avx = 2`), fed whole blocks; aws-lc-rs "
        "and the sha2 crate run AVX code paths at 0.66–0.68× of it. Falls back to aws-lc-rs without AVX2 and BMI2.",
    ],
    "memory": [
        "Streams everywhere with 1 MiB buffers: flat at about 20 MiB whatever the blob size.",
    ],
    "growth": [
        "Measured with the lookup cache off: one probe of the unique index on files.digest per request; the "
        "B-tree gains a level between 10³ and 10⁵ files, and 20,000 probes touch as many leaf pages.",
        "With the cache on (the default), a working set of up to 16,384 digests does not depend on the "
        "catalogue size; the machine's noise is as large as the effect.",
    ],
    "replication": [
        "One PUT straight to the final key, streamed while hashed (sha512 and sha256), its last chunk held back "
        "until the whole is proven: read and written once, as by the pipe. Above 5 GiB: parts under staging/ and "
        "an ETag-pinned publish copy (s3s-fs cannot name a multipart upload of a 128-hex key).",
        "The time includes starting the process, connecting to PostgreSQL and probing both regions.",
    ],
    "hawk": [
        "Each Hawk request claims its nonce in a write transaction (SQLite here, one writer), so that a replay is "
        "refused on every replica: ~0.4 ms each, which is the 0.03×; the certificate's and the MAC's HMACs are µs.",
        "Next step: nonces in memory where one process owns the database (SQLite), or claims batched per "
        "transaction on PostgreSQL; the Bearer path reads only the in-memory client table.",
    ],
    "search": [
        "Three characters and more: FTS5 trigram lookups, then the exact LIKE on what they found; a common word "
        "gathers every match before the limit of 500. Shorter texts walk the files in id order and stop at the "
        "limit: milliseconds for a letter names have, a whole scan (seconds) for one they lack (`q` here).",
        "Searches run 4 at once per replica and 5 s at most; beyond, 503 `search-busy` at once. wrk ignores "
        "Retry-After, so the 32 connections get ~30,000 503s a second, whose answers share the two cores with the "
        "downloads and with wrk: that, not waiting, is what the downloads lose.",
    ],
    "cdn": [
        "One public-key signature per redirect, CPU-bound on both cores: ECDSA P-256 ~25 µs, RSA-2048 ~330 µs "
        "(openssl speed here), against the SigV4 presign's HMACs. Prefer an ECDSA key pair.",
        "Next step: one signed URL per digest and Expires second, shared by every redirect in that second.",
    ],
    "scrub": [
        "Each copy is read through the one hasher, SHA-512 and SHA-256 (on a second thread past 1 MiB), on two "
        "cores shared with the process start, the database and the proof written per copy.",
    ],
    "scrub_redirect": [
        "The pass reads each copy in chunks, each waiting its turn so that the average stays under the rate: "
        "about 1.5 % of one core hashing, spread out, plus a proof written per copy.",
    ],
    "both_digests": [
        "The SHA-256 half runs on a thread of its own past 1 MiB, fed the same shared chunks (no copy), at most four "
        "waiting: two cores hash the two digests side by side, so the pair costs what the slower one does.",
    ],
    "tuf": [
        "A change waits for the signer's coalescing (about 1 s, then its 0.5 s poll), then one transaction signs "
        "the bins it touched, a snapshot of every bin and a timestamp; the client polls every 20 ms.",
        "A backfill signs all 256 bins once; each bin's canonical JSON grows with its targets (~390 bytes each), "
        "so a lazy lookup reads the snapshot (256 entries) and one bin, about 1/256 of the targets.",
    ],
    "parts_memory": [
        "Every part streams through 1 MiB buffers on both sides and the join copies file to file; RSS does not grow "
        "with the file or the number of parts (160 here).",
    ],
    "parts": [
        "Embedded store, loopback, 2 shared cores: nothing limits one connection here, so four parallel parts add no "
        "bandwidth; each part is written to disk, then joined into the staged file (a second full write), then hashed.",
        "The bytes sent twice after a kill are what was in flight (at most `-j` parts, partly sent); the next run "
        "asks the server's listing and sends only the missing parts. Peak RSS at 10 GiB: the next figure.",
    ],
}
assert sorted(LIMITS) == sorted(BENCHES) and sorted(TITLES) == sorted(BENCHES)
