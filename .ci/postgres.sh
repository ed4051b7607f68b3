#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests, on a local port: `start` prints its URL, `stop` stops it.
# Debian's package (installed by .ci/run when missing); as root, the server runs as the `postgres` user.
# Usage: url=$(bash .ci/postgres.sh start) ... bash .ci/postgres.sh stop
set -euo pipefail
dir=${PGTEST_DIR:-/tmp/scaling-search-pg}
port=${PGTEST_PORT:-55432}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case ${1:-} in
start)
    if [ -f "$dir/data/postmaster.pid" ]; then as_server "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true; fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    as_server "$bindir/initdb" -D "$dir/data" -U tests --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
    # fsync off: a test cluster, thrown away after the run
    as_server "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    echo "postgresql://tests@127.0.0.1:$port/postgres"
    ;;
stop)
    as_server "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
