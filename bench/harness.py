"""tooltool benchmarks: every figure is a ratio against a baseline measured in the same run.

Usage: python3 bench/run.py [--quick] [--only NAME ...] [--out bench/results.json]
       python3 bench/run.py --render | --check

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
             replicate` (streamed, hashed, one PUT) against curl GET piped into curl PUT of the
             same bytes between the same servers (MB/s).
  scrub_redirect  redirects while `tooltool-api scrub` reads at its default rate, against none,
             in interleaved pairs.
Each measurement is the median of several runs. Each figure is stored in bench/results.json with
its own date, commit, machine and command (a run with --only replaces those figures and keeps the
others as they were), and BENCHMARKS.md is generated from that file (--render writes it again,
--check fails if it differs); neither is edited by hand.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

from backends import ROOT, log
import figures

RESULTS = os.path.join(ROOT, "bench", "results.json")
MARKDOWN = os.path.join(ROOT, "BENCHMARKS.md")
COLUMNS = ["figure", "baseline", "ours", "ratio", "target", "met", "date", "commit", "machine", "command"]


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


def machine_label(m):
    """The machine column: what tells two machines apart at a glance."""
    return f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB"


def commit():
    """The commit measured (with -dirty when the work tree has changes)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def record(name, raw, a, argv):
    """One figure as results.json keeps it: its raw numbers and where they come from."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), "commit": commit(),
            "machine": machine(), "command": " ".join(["python3 bench/run.py", *argv]),
            "quick": a.quick, "runs": a.runs, "wrk_seconds": a.seconds, "raw": raw}


def merge(results, name, rec):
    """Replaces one figure, keeping every other one (with its own date, commit and machine)."""
    figures_ = dict(results.get("figures", {}))
    figures_[name] = rec
    return {**results, "figures": figures_}


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(results):
    """BENCHMARKS.md, exactly, from the results."""
    figs = results["figures"]
    out = ["# Benchmarks", "",
           "Generated by `python3 bench/run.py` from `bench/results.json`; do not edit by hand (the history",
           "of earlier runs is in git). Every ratio is against a baseline measured in the same run on the",
           "same machine, in interleaved pairs where both run at once, the median of the runs. Release builds.",
           "The machine is shared and noisy (2 cores for the load generator, the server and its backends):",
           "only the ratios mean anything, and the same figure moves by up to ±10 % between runs.", "",
           "```sh",
           "python3 bench/run.py                        # every figure (builds release binaries, installs wrk)",
           "python3 bench/run.py --quick                # smaller sizes, one run: a smoke test of the harness",
           "python3 bench/run.py --only redirect growth # these figures; the others keep their own run",
           "python3 bench/run.py --render               # BENCHMARKS.md again from bench/results.json",
           "```", "",
           "## Current figures", "",
           "| " + " | ".join(COLUMNS) + " |",
           "|" + "---|" * len(COLUMNS)]
    machines = {}
    for name in figures.ORDER:
        if name not in figs:
            continue
        rec = figs[name]
        label = machine_label(rec["machine"])
        machines.setdefault(label, rec["machine"])
        for row in figures.ROWS[name](rec["raw"]):
            values = [row["figure"], row["baseline"], row["ours"], row["ratio"], row["target"], row["met"],
                      rec["date"], rec["commit"], label, f"`{rec['command']}`"]
            out.append("| " + " | ".join(cell(v) for v in values) + " |")
    out += ["", "## What limits each figure", ""]
    for name in figures.ORDER:
        if name not in figs:
            continue
        lines = figures.LIMITS[name]
        assert 1 <= len(lines) <= 3, f"{name}: one to three lines on what limits it"
        out.append(f"**{figures.TITLES[name]}**")
        out.append("")
        out += [f"- {line}" for line in lines]
        out.append("")
    out += ["## Machines", ""]
    for label, m in machines.items():
        details = ", ".join(f"{k} {m[k]}" for k in ("kernel", "rustc", "wrk", "curl", "sha512sum") if k in m)
        out.append(f"- **{label}**: {details}")
    return "\n".join(out) + "\n"


def load(path):
    with open(path) as f:
        return json.load(f)


def write(results, path, markdown):
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    with open(markdown, "w") as f:
        f.write(render(results))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes and shorter runs (smoke test)")
    p.add_argument("--only", nargs="*", choices=sorted(figures.BENCHES), help="run only these")
    p.add_argument("--runs", type=int, default=5, help="runs (or ceiling/tooltool pairs) per measurement (median)")
    p.add_argument("--seconds", type=int, default=6, help="seconds per wrk run")
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--markdown", default=MARKDOWN)
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--render", action="store_true", help="write BENCHMARKS.md from the results file, run nothing")
    p.add_argument("--check", action="store_true", help="fail unless BENCHMARKS.md is what --render writes")
    a = p.parse_args(argv)
    if a.render or a.check:
        text = render(load(a.out))
        if a.check:
            with open(a.markdown) as f:
                same = f.read() == text
            if not same:
                log(f"{a.markdown} is not what bench/run.py --render makes from {a.out}")
            return 0 if same else 1
        with open(a.markdown, "w") as f:
            f.write(text)
        return 0
    if a.quick:
        a.seconds, a.runs = min(a.seconds, 3), min(a.runs, 1)
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "tooltool-api", "-p", "tooltool-cli", "-p",
                        "tooltool-bench"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "tooltool-sha512", "--example", "sha512_speed"],
                       cwd=ROOT, check=True)
    results = load(a.out) if os.path.exists(a.out) else {"figures": {}}
    with tempfile.TemporaryDirectory(prefix="tooltool-bench-") as work:
        for name in a.only or list(figures.BENCHES):
            log(f"== {name}")
            raw = figures.BENCHES[name](work, a)
            log(json.dumps(raw, indent=2))
            # Written after each figure, so that a failure later keeps what was measured.
            results = merge(results, name, record(name, raw, a, argv))
            write(results, a.out, a.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
