# Sourced by scripts that need PostgreSQL: a throwaway cluster in a temp
# dir (initdb, a free loopback port, the socket in the temp dir), stopped
# and removed by postgres_stop. Installs Debian's postgresql package when
# initdb is nowhere to be found. As root, the server runs as the postgres
# user (PostgreSQL refuses to run as root).

# The directory of initdb and pg_ctl: TIDEWRIGHT_PG_BIN, else Debian's newest
# /usr/lib/postgresql/<version>/bin, else wherever PATH has initdb.
postgres_bin() {
  if [ -n "${TIDEWRIGHT_PG_BIN:-}" ]; then
    echo "$TIDEWRIGHT_PG_BIN"
    return
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
  elif command -v initdb >/dev/null; then
    dirname "$(command -v initdb)"
  else
    return 1
  fi
}

postgres_install() {
  if postgres_bin >/dev/null; then
    return
  fi
  echo "installing Debian's postgresql package (initdb not found)" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

# Runs a PostgreSQL program as the user that may run the server.
postgres_run() {
  local program=$1
  shift
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$PG_BIN/$program" "$@"
  else
    "$PG_BIN/$program" "$@"
  fi
}

# Starts a cluster; exports TIDEWRIGHT_TEST_POSTGRES_URL (its `postgres`
# database, user `tidewright`, trusted on loopback only).
postgres_start() {
  postgres_install
  PG_BIN=$(postgres_bin)
  PG_DIR=$(mktemp -d -t tidewright-pg-XXXXXX)
  [ "$(id -u)" -ne 0 ] || chown postgres "$PG_DIR"
  postgres_run initdb -D "$PG_DIR/data" -U tidewright -A trust -E UTF8 --no-sync >/dev/null
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 40000))
    # Nothing answers there: free.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
  done
  postgres_run pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null
  export TIDEWRIGHT_TEST_POSTGRES_URL="postgres://tidewright@127.0.0.1:$port/postgres"
  echo "throwaway PostgreSQL at $TIDEWRIGHT_TEST_POSTGRES_URL" >&2
}

postgres_stop() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ]; then
    postgres_run pg_ctl -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
