#!/usr/bin/env bash
# Starts or stops a throw-away PostgreSQL server on a loopback port, run as the
# unprivileged `postgres` user, for the store test suite.
#   eval "$(scripts/pg-test-server.sh start)"   # exports IDMINT_TEST_POSTGRES
#   scripts/pg-test-server.sh stop
set -euo pipefail
dir=${IDMINT_PG_DIR:-/tmp/idmint-pg}
port=${IDMINT_PG_PORT:-55432}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
run_as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-}" in
  start)
    [ -n "$bindir" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then useradd --system --home "$dir" postgres; fi
    run_as_postgres "$bindir/pg_ctl" -D "$dir/data" stop -m immediate >/dev/null 2>&1 || true
    rm -rf "$dir"; mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown postgres "$dir"
    run_as_postgres "$bindir/initdb" -D "$dir/data" -U idmint --auth=trust >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    run_as_postgres "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "export IDMINT_TEST_POSTGRES=postgres://idmint@127.0.0.1:$port/postgres"
    ;;
  stop)
    [ -d "$dir/data" ] && run_as_postgres "$bindir/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
