#!/usr/bin/env bash
# Runs every test of the workspace, the PostgreSQL + S3 ones included.
#
# Starts a throwaway PostgreSQL cluster and two s3s-fs S3 servers (two regions) (installing s3s-fs, and on a
# machine without PostgreSQL the postgresql package, when missing), runs `cargo test` for the
# whole workspace with their coordinates in the environment, and stops them whatever happens.
# Extra arguments go to `cargo test` (e.g. `./scripts/test.sh -- upload`).
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${TOOLTOOL_TOOLS_DIR:-$HOME/.cache/tooltool-tools}"
s3s="$tools/bin/s3s-fs"
if [ ! -x "$s3s" ]; then
    echo "test.sh: installing s3s-fs 0.14.1 into $tools (about 3 minutes, once)"
    cargo install s3s-fs@0.14.1 --locked --features binary --root "$tools"
fi

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test.sh: installing PostgreSQL"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    else
        echo "test.sh: PostgreSQL server binaries not found: install the postgresql package" >&2
        exit 1
    fi
fi

work=$(mktemp -d /tmp/tooltool-test.XXXXXX)
chmod 755 "$work"
s3_pids=""
as_pg() {
    if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
cleanup() {
    as_pg "$pg_bin/pg_ctl -D $work/pg -m immediate stop" >/dev/null 2>&1 || true
    for pid in $s3_pids; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg"
pg_port=$(free_port)
as_pg "$pg_bin/initdb -D $work/pg -U postgres --auth=trust" >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; exit 1; }
as_pg "$pg_bin/pg_ctl -D $work/pg -l $work/pg/server.log -w start -o '-c listen_addresses=127.0.0.1 -p $pg_port -k $work/pg -c max_connections=500 -c fsync=off -c synchronous_commit=off'" >/dev/null

s3_key="tooltool-test"
s3_secret="tooltool-test-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
# Two S3 servers, two regions on different endpoints for the replication tests (same keys).
start_s3() { # name -> sets s3_port
    s3_port=$(free_port)
    mkdir "$work/$1"
    "$s3s" --host 127.0.0.1 --port "$s3_port" --access-key "$s3_key" --secret-key "$s3_secret" "$work/$1" >"$work/$1.log" 2>&1 &
    s3_pids="$s3_pids $!"
    for _ in $(seq 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$s3_port/"; then break; fi
        sleep 0.1
    done
    curl -s -o /dev/null "http://127.0.0.1:$s3_port/" || { echo "test.sh: s3s-fs did not start" >&2; cat "$work/$1.log"; exit 1; }
}
start_s3 s3-b
s3_port_b=$s3_port
start_s3 s3

export TOOLTOOL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export TOOLTOOL_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export TOOLTOOL_TEST_S3_ACCESS_KEY="$s3_key"
export TOOLTOOL_TEST_S3_SECRET_KEY="$s3_secret"
export TOOLTOOL_TEST_S3_ENDPOINT_B="http://127.0.0.1:$s3_port_b"
export TOOLTOOL_TEST_S3S_BIN="$s3s"
echo "test.sh: PostgreSQL on port $pg_port, s3s-fs on ports $s3_port and $s3_port_b"
cargo test --workspace --all-targets "$@"
