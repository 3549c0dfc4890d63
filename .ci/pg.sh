# Source this: installs PostgreSQL from the Debian packages if missing,
# starts a private server on its own Unix socket (its own data directory, no TCP),
# exports NARROWGATE_TEST_PG_URL (and NARROWGATE_TEST_PG_BIN), and stops the server when the shell exits.
# Idempotent; never touches a system cluster.

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

if ! PG_BIN=$(pg_bin); then
  echo "== installing PostgreSQL (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  for attempt in 1 2 3; do
    apt-get update -qq && apt-get install -y -qq postgresql && break
    echo "apt-get failed (attempt $attempt); retrying" >&2
    sleep 5
  done
  PG_BIN=$(pg_bin) || { echo "PostgreSQL could not be installed" >&2; return 1; }
fi

# The server refuses to run as root: run it as the postgres user when root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PG_DIR=$(mktemp -d /tmp/narrowgate-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
# Its own socket directory and no TCP at all: no port to find (a port
# probed free and released could be taken before the server binds it).
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
  || { cat "$PG_DIR/initdb.log" >&2; return 1; }
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
  -o "-p 5432 -k $PG_DIR -c listen_addresses= -c max_connections=300 -c fsync=off" start >/dev/null \
  || { cat "$PG_DIR/server.log" >&2; return 1; }
pg_stop() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap pg_stop EXIT
export NARROWGATE_TEST_PG_URL="postgres://postgres@localhost:5432/postgres?host=$PG_DIR"
# Tests that stop and restart a server of their own (outages) find it here.
export NARROWGATE_TEST_PG_BIN="$PG_BIN"
echo "== PostgreSQL running on its socket in $PG_DIR"
