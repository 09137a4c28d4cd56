#!/usr/bin/env bash
# Runs every test of the workspace, the PostgreSQL + S3 ones included.
#
# Starts a throwaway PostgreSQL cluster, two s3s-fs S3 servers (two regions) and a private
# RabbitMQ node through scripts/backends.sh (the one way they are started, the benchmarks'
# too), and has Chromium and chromedriver for the admin page's browser tests (installing the
# chromium and chromium-driver packages when missing), runs `cargo test --no-fail-fast` for the
# whole workspace with their coordinates in the environment, and stops them whatever happens.
# Extra arguments go to `cargo test` (e.g. `./scripts/test.sh -- upload`).
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${TOOLTOOL_TOOLS_DIR:-$HOME/.cache/tooltool-tools}"

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

# The benchmark harness's own tests (BENCHMARKS.md is what it generates from bench/results.json).
python3 -m unittest discover -s bench -p 'test_*.py'

work=$(mktemp -d /tmp/tooltool-test.XXXXXX)
trap 'scripts/backends.sh stop "$work"' EXIT
scripts/backends.sh start "$work" --postgres --s3 2 --rabbitmq --chromium
# shellcheck disable=SC1091
. "$work/env"

echo "test.sh: PostgreSQL at $TOOLTOOL_TEST_POSTGRES_URL, s3s-fs at $TOOLTOOL_TEST_S3_ENDPOINT and $TOOLTOOL_TEST_S3_ENDPOINT_B, RabbitMQ $RABBITMQ_NODENAME on port $RABBITMQ_NODE_PORT"
# --no-fail-fast: one failing test binary does not hide the results of the others.
cargo test --workspace --all-targets --no-fail-fast "$@"
