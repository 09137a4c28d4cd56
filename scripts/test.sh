#!/usr/bin/env bash
# Runs every test of the workspace, the PostgreSQL + S3 ones included.
#
# Starts a throwaway PostgreSQL cluster, two s3s-fs S3 servers (two regions) and a private
# RabbitMQ node, and has Chromium and chromedriver for the admin page's browser tests
# (installing s3s-fs, and on a machine without them the postgresql, rabbitmq-server, chromium and
# chromium-driver packages, when missing), runs `cargo test` for the whole workspace with their
# coordinates in the environment, and stops them whatever happens.
# Extra arguments go to `cargo test` (e.g. `./scripts/test.sh -- upload`).
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${TOOLTOOL_TOOLS_DIR:-$HOME/.cache/tooltool-tools}"
s3s="$tools/bin/s3s-fs"
if [ ! -x "$s3s" ]; then
    echo "test.sh: installing s3s-fs 0.14.1 into $tools (about 3 minutes, once)"
    cargo install s3s-fs@0.14.1 --locked --features binary --root "$tools"
fi

# Real independent clients from PyPI for the protocol tests (Taskcluster credentials, Hawk,
# TUF): a venv of their own, made once. The tests fail, never skip, without it.
venv="$tools/venv"
py_reqs="taskcluster==113.2.0 mohawk==1.1.0 tuf==7.0.1"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/requirements" 2>/dev/null)" != "$py_reqs" ]; then
    echo "test.sh: installing $py_reqs into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check $py_reqs
    echo "$py_reqs" >"$venv/requirements"
fi
export TOOLTOOL_TEST_PYTHON="$venv/bin/python"

# Installs Debian packages a test needs (as root), or stops saying which are missing.
apt_updated=""
install_packages() {
    local what=$1
    shift
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test.sh: installing $what"
        [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        echo "test.sh: $what not found: install the packages $*" >&2
        exit 1
    fi
}

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    install_packages PostgreSQL postgresql
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

mq_bin=/usr/lib/rabbitmq/bin
if [ ! -x "$mq_bin/rabbitmq-server" ] || [ ! -x "$mq_bin/rabbitmqctl" ]; then
    install_packages RabbitMQ rabbitmq-server
fi

# The admin page's tests drive the distribution's Chromium through its chromedriver.
if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || [ -x /usr/lib/chromium/chromium ]; }; then
    install_packages "Chromium and chromedriver" chromium chromium-driver
fi

work=$(mktemp -d /tmp/tooltool-test.XXXXXX)
chmod 755 "$work"
s3_pids=""
mq_started=""
as_pg() {
    if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
cleanup() {
    if [ -n "$mq_started" ]; then
        HOME="$work/mq/home" "$mq_bin/rabbitmqctl" -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 || true
        # If the node would not stop cleanly, kill its Erlang VM (by the pid it wrote).
        [ -s "$RABBITMQ_PID_FILE" ] && kill -9 "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null || true
    fi
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

# A private RabbitMQ node: its own ports, name, data, logs, configuration and Erlang cookie
# (under its own HOME, given to its commands only), so nothing global is read or touched.
# The tests stop and start its application with `rabbitmqctl -n $RABBITMQ_NODENAME
# stop_app|start_app`, run with these variables and HOME=$TOOLTOOL_TEST_RABBITMQ_HOME.
mq_port=$(free_port)
mq_dist_port=$(free_port)
mkdir -p "$work/mq/home" "$work/mq/mnesia" "$work/mq/log"
echo "[]." >"$work/mq/enabled_plugins"
printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$mq_port" >"$work/mq/rabbitmq.conf"
export RABBITMQ_NODENAME="tt-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')@localhost"
export RABBITMQ_NODE_PORT="$mq_port"
export RABBITMQ_DIST_PORT="$mq_dist_port"
export RABBITMQ_SERVER_START_ARGS="-kernel inet_dist_listen_min $mq_dist_port -kernel inet_dist_listen_max $mq_dist_port"
export RABBITMQ_MNESIA_BASE="$work/mq/mnesia"
export RABBITMQ_LOG_BASE="$work/mq/log"
export RABBITMQ_CONFIG_FILE="$work/mq/rabbitmq.conf"
export RABBITMQ_ENABLED_PLUGINS_FILE="$work/mq/enabled_plugins"
export RABBITMQ_PLUGINS_EXPAND_DIR="$work/mq/plugins"
export RABBITMQ_PID_FILE="$work/mq/pid"
mq_started=1
HOME="$work/mq/home" "$mq_bin/rabbitmq-server" >"$work/mq/server.log" 2>&1 &
mq_ok=""
for _ in $(seq 60); do
    if HOME="$work/mq/home" "$mq_bin/rabbitmqctl" -n "$RABBITMQ_NODENAME" await_startup --timeout 60 >/dev/null 2>&1; then mq_ok=1; break; fi
    sleep 1
done
[ -n "$mq_ok" ] || { echo "test.sh: RabbitMQ did not start" >&2; tail -n 30 "$work/mq/server.log" >&2; exit 1; }
export TOOLTOOL_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$mq_port/%2f"
export TOOLTOOL_TEST_RABBITMQCTL="$mq_bin/rabbitmqctl"
export TOOLTOOL_TEST_RABBITMQ_HOME="$work/mq/home"

export TOOLTOOL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export TOOLTOOL_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export TOOLTOOL_TEST_S3_ACCESS_KEY="$s3_key"
export TOOLTOOL_TEST_S3_SECRET_KEY="$s3_secret"
export TOOLTOOL_TEST_S3_ENDPOINT_B="http://127.0.0.1:$s3_port_b"
# The failure tests start, stop and restart backends of their own from these.
export TOOLTOOL_TEST_PG_BIN="$pg_bin"
export TOOLTOOL_TEST_S3S_BIN="$s3s"
echo "test.sh: PostgreSQL on port $pg_port, s3s-fs on ports $s3_port and $s3_port_b, RabbitMQ $RABBITMQ_NODENAME on port $mq_port"
cargo test --workspace --all-targets "$@"
