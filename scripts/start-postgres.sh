#!/usr/bin/env bash
# Make a local PostgreSQL server available for the test suite, idempotently.
#
#   URL=$(scripts/start-postgres.sh | tail -n1)
#
# On a clean Debian/Ubuntu machine this installs PostgreSQL from apt, creates a cluster if
# there is none, starts it, waits until it accepts TCP connections on 127.0.0.1, and creates
# the role `flowscope` (password `flowscope`, LOGIN CREATEDB) and the database
# `flowscope_test` owned by it. Safe to run any number of times.
#
# Only the SQLAlchemy URL is written to stdout (its last and only line); everything else
# goes to stderr. Needs root (or passwordless sudo) for apt-get and cluster management.
set -euo pipefail

# Keep the real stdout on fd 3 for the URL; send everything else (apt, psql, ...) to stderr.
exec 3>&1 1>&2

ROLE=flowscope
PASSWORD=flowscope
DATABASE=flowscope_test
WAIT_SECONDS=${FLOWSCOPE_PG_WAIT_SECONDS:-30}

log() { printf 'start-postgres: %s\n' "$*" >&2; }
die() { printf 'start-postgres: ERROR: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    die "must run as root (or have sudo) to install and start PostgreSQL"
fi

# Run a command as the postgres OS user (peer auth over the local socket), from a directory
# it can read so psql does not warn about the current directory.
as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        (cd / && "$@")
    elif [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && sudo -u postgres -- "$@")
    fi
}

# Run a command that may leave a daemon behind (apt-get's postinst, pg_ctlcluster) with stdin
# from /dev/null, stdout on stderr and every other inherited descriptor closed. Otherwise the
# postmaster keeps the caller's pipes open (our saved stdout on fd 3, a CI runner's log pipe)
# and `$(scripts/start-postgres.sh | tail -n1)` would wait forever for EOF.
run_detached() {
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec "$@" </dev/null >&2
    )
}

newest_server_version() {
    local bin
    # Glob sorted by version; prints nothing if no server is installed.
    for bin in /usr/lib/postgresql/*/bin/postgres; do
        if [ -x "$bin" ]; then basename "$(dirname "$(dirname "$bin")")"; fi
    done | sort -V | tail -n1
}

# --- 1. server binaries -------------------------------------------------------------------
VERSION=$(newest_server_version)
if [ -z "$VERSION" ]; then
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is not available"
    log "PostgreSQL server not found; installing it with apt-get (quietly) ..."
    apt_log=$(mktemp)
    start=$SECONDS
    if ! { run_detached "${SUDO[@]}" apt-get update -qq \
           && run_detached "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends postgresql; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        die "apt-get install postgresql failed (output above)"
    fi
    rm -f "$apt_log"
    VERSION=$(newest_server_version)
    [ -n "$VERSION" ] || die "installed the postgresql package but found no /usr/lib/postgresql/*/bin/postgres"
    log "installed PostgreSQL $VERSION in $((SECONDS - start))s"
else
    log "PostgreSQL $VERSION server binaries present"
fi
command -v pg_lsclusters >/dev/null 2>&1 || die "pg_lsclusters missing (package postgresql-common not installed?)"

# --- 2. cluster ---------------------------------------------------------------------------
# pg_lsclusters -h columns: Ver Cluster Port Status Owner Datadir Logfile
cluster_field() {  # cluster_field <version> <name> <column number>
    pg_lsclusters -h | awk -v v="$1" -v c="$2" -v f="$3" '$1 == v && $2 == c { print $f; exit }'
}

CLUSTER=
if [ -n "$(cluster_field "$VERSION" main 1)" ]; then
    CLUSTER=main
else
    # Some other cluster of this version (e.g. created by hand); otherwise create "main".
    CLUSTER=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v { print $2; exit }')
fi
if [ -z "$CLUSTER" ]; then
    CLUSTER=main
    log "no PostgreSQL $VERSION cluster; creating $VERSION/$CLUSTER"
    run_detached "${SUDO[@]}" pg_createcluster "$VERSION" "$CLUSTER"
fi
PORT=$(cluster_field "$VERSION" "$CLUSTER" 3)
[ -n "$PORT" ] || die "could not determine the port of cluster $VERSION/$CLUSTER (pg_lsclusters: $(pg_lsclusters -h))"

# --- 3. start -----------------------------------------------------------------------------
status=$(cluster_field "$VERSION" "$CLUSTER" 4)
case "$status" in
    online*)
        log "cluster $VERSION/$CLUSTER already running on port $PORT" ;;
    *)
        log "starting cluster $VERSION/$CLUSTER (port $PORT) ..."
        start=$SECONDS
        # Exit status 2 means "already running" (a race with another starter): fine.
        rc=0
        run_detached "${SUDO[@]}" pg_ctlcluster "$VERSION" "$CLUSTER" start || rc=$?
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
            logfile=$(cluster_field "$VERSION" "$CLUSTER" 7)
            [ -n "$logfile" ] && [ -r "$logfile" ] && tail -n 20 "$logfile" >&2
            die "pg_ctlcluster $VERSION $CLUSTER start failed (exit $rc)"
        fi
        log "started in $((SECONDS - start))s" ;;
esac

# --- 4. wait for TCP on 127.0.0.1 ---------------------------------------------------------
deadline=$((SECONDS + WAIT_SECONDS))
until pg_isready -q -h 127.0.0.1 -p "$PORT"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        pg_isready -h 127.0.0.1 -p "$PORT" >&2 || true
        die "PostgreSQL $VERSION/$CLUSTER did not accept connections on 127.0.0.1:$PORT within ${WAIT_SECONDS}s (is listen_addresses set to include localhost? see /var/log/postgresql/)"
    fi
    sleep 0.5
done
log "server accepts connections on 127.0.0.1:$PORT"

# --- 5. role and database -----------------------------------------------------------------
psql_admin() { as_postgres psql -X -q -At -v ON_ERROR_STOP=1 -p "$PORT" -d postgres "$@"; }

if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    log "creating role $ROLE"
    psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
else
    # Keep an existing role usable: the tests depend on these attributes and this password.
    psql_admin -c "ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
fi

if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    log "creating database $DATABASE owned by $ROLE"
    psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE"
else
    psql_admin -c "ALTER DATABASE $DATABASE OWNER TO $ROLE"
fi

# --- 6. password auth over TCP ------------------------------------------------------------
check_tcp_login() {
    PGPASSWORD=$PASSWORD PGCONNECT_TIMEOUT=5 psql -X -q -At -h 127.0.0.1 -p "$PORT" \
        -U "$ROLE" -d "$DATABASE" -c 'SELECT 1' 2>&1
}
if ! out=$(check_tcp_login) || [ "$out" != 1 ]; then
    # Debian's default pg_hba.conf allows scram-sha-256 from 127.0.0.1; if this one does not,
    # put a rule for our role first and reload.
    hba=$(psql_admin -c 'SHOW hba_file')
    log "password login over TCP failed ($out); adding a rule for $ROLE to $hba"
    rule="host    all             $ROLE       127.0.0.1/32            scram-sha-256"
    if ! grep -qxF "$rule" "$hba"; then
        tmp=$(mktemp)
        { echo "# added by flowscope scripts/start-postgres.sh"; echo "$rule"; cat "$hba"; } >"$tmp"
        cat "$tmp" >"$hba"   # keep the file's owner and mode
        rm -f "$tmp"
    fi
    psql_admin -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 1
    if ! out=$(check_tcp_login) || [ "$out" != 1 ]; then
        die "cannot log in as $ROLE over TCP to 127.0.0.1:$PORT: $out"
    fi
fi
log "role $ROLE can log in to $DATABASE on 127.0.0.1:$PORT with a password"

# --- 7. the URL, alone on stdout ----------------------------------------------------------
echo "postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE" >&3
