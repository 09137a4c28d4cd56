#!/usr/bin/env bash
# The one way to start the backends of the tests and the benchmarks: a throwaway PostgreSQL
# cluster, s3s-fs S3 servers and a private RabbitMQ node, each on loopback ports of its own.
#
#   scripts/backends.sh start DIR [--postgres] [--s3 N] [--rabbitmq] [--chromium]
#       starts what is asked (--chromium only makes sure Chromium and chromedriver are there,
#       for the admin page's browser tests) (installing s3s-fs, and as root the postgresql and rabbitmq-server
#       packages, when missing) with its files under DIR (created), and writes DIR/env: one
#       `export NAME=value` line per coordinate (TOOLTOOL_TEST_POSTGRES_URL,
#       TOOLTOOL_TEST_S3_ENDPOINT, TOOLTOOL_TEST_S3_ENDPOINT_B, …, TOOLTOOL_TEST_S3_ACCESS_KEY,
#       TOOLTOOL_TEST_S3_SECRET_KEY, TOOLTOOL_TEST_AMQP_URL, …). Exits non-zero, saying why,
#       if one does not start; PostgreSQL's log is then kept (its path is printed).
#   scripts/backends.sh stop DIR
#       stops everything started under DIR and removes DIR.
#
# Ports without a race: a port picked free can be taken by another process before the server
# binds it. Each server is therefore started on a picked port and checked to be the process
# that listens there (PostgreSQL and RabbitMQ fail when they cannot bind; for s3s-fs the
# listener's pid is compared with ours); if not, it is stopped and started again on another
# port, up to five times.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/backends.sh start DIR [--postgres] [--s3 N] [--rabbitmq] [--chromium] | stop DIR" >&2
    exit 2
}
[ $# -ge 2 ] || usage
action=$1
work=$2
shift 2

tools="${TOOLTOOL_TOOLS_DIR:-$HOME/.cache/tooltool-tools}"
s3s="$tools/bin/s3s-fs"
mq_bin=/usr/lib/rabbitmq/bin
attempts=5

as_pg() {
    if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}

if [ "$action" = stop ]; then
    [ -d "$work" ] || exit 0
    if [ -s "$work/mq.env" ]; then
        # shellcheck disable=SC1091
        . "$work/mq.env"
        HOME="$work/mq/home" "$mq_bin/rabbitmqctl" -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 || true
        # If the node would not stop cleanly, kill its Erlang VM (by the pid it wrote).
        [ -s "$RABBITMQ_PID_FILE" ] && kill -9 "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null || true
    fi
    if [ -f "$work/pg.bin" ]; then
        as_pg "$(cat "$work/pg.bin")/pg_ctl -D $work/pg -m immediate stop" >/dev/null 2>&1 || true
    fi
    if [ -f "$work/s3.pids" ]; then
        for pid in $(cat "$work/s3.pids"); do kill "$pid" 2>/dev/null || true; done
    fi
    rm -rf "$work"
    exit 0
fi
[ "$action" = start ] || usage

want_pg="" want_mq="" want_chromium="" s3_count=0
while [ $# -gt 0 ]; do
    case $1 in
        --postgres) want_pg=1 ;;
        --rabbitmq) want_mq=1 ;;
        --chromium) want_chromium=1 ;;
        --s3) s3_count=$2; shift ;;
        *) usage ;;
    esac
    shift
done

# Installs Debian packages a backend needs (as root), or stops saying which are missing.
apt_updated=""
install_packages() {
    local what=$1
    shift
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "backends.sh: installing $what" >&2
        [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        echo "backends.sh: $what not found: install the packages $*" >&2
        exit 1
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether process $1 (or one of its children) is the one listening on port $2.
listens() {
    ss -ltnpH "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
}

if [ -n "$want_chromium" ]; then
    if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || [ -x /usr/lib/chromium/chromium ]; }; then
        install_packages "Chromium and chromedriver" chromium chromium-driver
    fi
fi

mkdir -p "$work"
chmod 755 "$work"
: >"$work/env"
emit() { printf 'export %s=%q\n' "$1" "$2" >>"$work/env"; }

if [ -n "$want_pg" ]; then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
        install_packages PostgreSQL postgresql
        pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    echo "$pg_bin" >"$work/pg.bin"
    mkdir "$work/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
    as_pg "$pg_bin/initdb -D $work/pg -U postgres --auth=trust" >"$work/initdb.log" 2>&1 \
        || { cat "$work/initdb.log" >&2; exit 1; }
    pg_port=""
    for _ in $(seq $attempts); do
        port=$(free_port)
        # pg_ctl -w fails when the postmaster cannot bind the port: then another one is tried.
        if as_pg "$pg_bin/pg_ctl -D $work/pg -l $work/pg/server.log -w start -o '-c listen_addresses=127.0.0.1 -p $port -k $work/pg -c max_connections=500 -c fsync=off -c synchronous_commit=off'" >/dev/null 2>&1; then
            pg_port=$port
            break
        fi
    done
    if [ -z "$pg_port" ]; then
        kept=$(mktemp /tmp/tooltool-postgres-XXXXXX.log)
        cp "$work/pg/server.log" "$kept" 2>/dev/null || true
        echo "backends.sh: PostgreSQL did not start; its log is kept in $kept:" >&2
        tail -n 30 "$kept" >&2
        exit 1
    fi
    emit TOOLTOOL_TEST_POSTGRES_URL "postgres://postgres@127.0.0.1:$pg_port/postgres"
    emit TOOLTOOL_TEST_PG_BIN "$pg_bin"
fi

if [ "$s3_count" -gt 0 ]; then
    if [ ! -x "$s3s" ]; then
        echo "backends.sh: installing s3s-fs 0.14.1 into $tools (about 3 minutes, once)" >&2
        cargo install s3s-fs@0.14.1 --locked --features binary --root "$tools"
    fi
    s3_key="tooltool-test"
    s3_secret="tooltool-test-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    : >"$work/s3.pids"
    # Starts s3s-fs number $1 serving $work/s3-$1; sets s3_port.
    start_s3() {
        local dir="$work/s3-$1" pid
        mkdir -p "$dir"
        for _ in $(seq $attempts); do
            s3_port=$(free_port)
            "$s3s" --host 127.0.0.1 --port "$s3_port" --access-key "$s3_key" --secret-key "$s3_secret" "$dir" \
                >"$dir.log" 2>&1 &
            pid=$!
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                if listens "$pid" "$s3_port"; then
                    echo "$pid" >>"$work/s3.pids"
                    return 0
                fi
                sleep 0.1
            done
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
        echo "backends.sh: s3s-fs did not start:" >&2
        cat "$dir.log" >&2
        return 1
    }
    letters=(_ _ B C D E F G H)
    [ "$s3_count" -lt ${#letters[@]} ] || { echo "backends.sh: at most $((${#letters[@]} - 1)) S3 servers" >&2; exit 2; }
    for i in $(seq "$s3_count"); do
        start_s3 "$i"
        # The first is TOOLTOOL_TEST_S3_ENDPOINT, the next ones _B, _C, …; each serves a
        # directory (an s3s-fs bucket is a directory in it), TOOLTOOL_TEST_S3_DIR likewise.
        suffix=""
        [ "$i" -gt 1 ] && suffix="_${letters[$i]}"
        emit "TOOLTOOL_TEST_S3_ENDPOINT$suffix" "http://127.0.0.1:$s3_port"
        emit "TOOLTOOL_TEST_S3_DIR$suffix" "$work/s3-$i"
    done
    emit TOOLTOOL_TEST_S3_ACCESS_KEY "$s3_key"
    emit TOOLTOOL_TEST_S3_SECRET_KEY "$s3_secret"
    emit TOOLTOOL_TEST_S3S_BIN "$s3s"
fi

if [ -n "$want_mq" ]; then
    if [ ! -x "$mq_bin/rabbitmq-server" ] || [ ! -x "$mq_bin/rabbitmqctl" ]; then
        install_packages RabbitMQ rabbitmq-server
    fi
    # A private node: its own ports, name, data, logs, configuration and Erlang cookie (under
    # its own HOME, given to its commands only), so nothing global is read or touched. The
    # tests stop and start its application with `rabbitmqctl -n $RABBITMQ_NODENAME
    # stop_app|start_app`, run with these variables and HOME=$TOOLTOOL_TEST_RABBITMQ_HOME.
    mkdir -p "$work/mq/home" "$work/mq/mnesia" "$work/mq/log"
    echo "[]." >"$work/mq/enabled_plugins"
    mq_ok=""
    for _ in $(seq $attempts); do
        mq_port=$(free_port)
        mq_dist_port=$(free_port)
        printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$mq_port" >"$work/mq/rabbitmq.conf"
        {
            echo "export RABBITMQ_NODENAME=tt-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')@localhost"
            echo "export RABBITMQ_NODE_PORT=$mq_port"
            echo "export RABBITMQ_DIST_PORT=$mq_dist_port"
            echo "export RABBITMQ_SERVER_START_ARGS='-kernel inet_dist_listen_min $mq_dist_port -kernel inet_dist_listen_max $mq_dist_port'"
            echo "export RABBITMQ_MNESIA_BASE=$work/mq/mnesia"
            echo "export RABBITMQ_LOG_BASE=$work/mq/log"
            echo "export RABBITMQ_CONFIG_FILE=$work/mq/rabbitmq.conf"
            echo "export RABBITMQ_ENABLED_PLUGINS_FILE=$work/mq/enabled_plugins"
            echo "export RABBITMQ_PLUGINS_EXPAND_DIR=$work/mq/plugins"
            echo "export RABBITMQ_PID_FILE=$work/mq/pid"
        } >"$work/mq.env"
        # shellcheck disable=SC1091
        . "$work/mq.env"
        HOME="$work/mq/home" "$mq_bin/rabbitmq-server" >"$work/mq/server.log" 2>&1 &
        mq_pid=$!
        # A node that cannot bind its ports stops; a running one must listen on the AMQP port.
        for _ in $(seq 60); do
            kill -0 "$mq_pid" 2>/dev/null || break
            if HOME="$work/mq/home" "$mq_bin/rabbitmqctl" -n "$RABBITMQ_NODENAME" await_startup --timeout 60 >/dev/null 2>&1 \
                && ss -ltnH "sport = :$mq_port" | grep -q .; then
                mq_ok=1
                break
            fi
            sleep 1
        done
        [ -n "$mq_ok" ] && break
        HOME="$work/mq/home" "$mq_bin/rabbitmqctl" -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 || true
        [ -s "$RABBITMQ_PID_FILE" ] && kill -9 "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null || true
        kill "$mq_pid" 2>/dev/null || true
        rm -rf "$work/mq/mnesia"/* "$RABBITMQ_PID_FILE"
    done
    [ -n "$mq_ok" ] || { echo "backends.sh: RabbitMQ did not start" >&2; tail -n 30 "$work/mq/server.log" >&2; exit 1; }
    cat "$work/mq.env" >>"$work/env"
    emit TOOLTOOL_TEST_AMQP_URL "amqp://guest:guest@127.0.0.1:$mq_port/%2f"
    emit TOOLTOOL_TEST_RABBITMQCTL "$mq_bin/rabbitmqctl"
    emit TOOLTOOL_TEST_RABBITMQ_HOME "$work/mq/home"
fi
