#!/usr/bin/env bash
# The PITR figures of docs/operations.md ("Measured figures") for a dataset of
# any size: a private PostgreSQL 15 archiving through `ghostworks pitr` into an
# encrypted local repository, the benchmark's dataset loaded into it, then:
#   - archive throughput: WAL written by the load and the time until the
#     archive holds all of it;
#   - a full backup: time and MB/s of database;
#   - a drill under a trickle of writes: RTO (restore start to a server
#     answering queries) and RPO (age of the newest recovered transaction).
#
#   scripts/bench/pitr-figures.sh [ARTIFACTS]      (default 1000000; root)
#
# Uses target/release/{ghostworks,ghostworks-bench} when built, else debug.
# Everything lives in a temporary directory removed at the end.
set -Eeuo pipefail
ARTIFACTS="${1:-1000000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ "$(id -u)" = 0 ] || { echo "run as root (PostgreSQL and pgBackRest run as postgres)" >&2; exit 1; }
bin() { local b; for b in "$ROOT/target/release/$1" "$ROOT/target/debug/$1"; do [ -x "$b" ] && { echo "$b"; return; }; done
    echo "build $1 first (cargo build --release -p ${2:-$1})" >&2; exit 1; }
GW="$(bin ghostworks)"; BENCH="$(bin ghostworks-bench)"
PGBIN=/usr/lib/postgresql/15/bin
command -v pgbackrest >/dev/null || { echo "pgbackrest missing: apt-get install pgbackrest" >&2; exit 1; }

DIR="$(mktemp -d /var/tmp/ghostworks-pitr-figures.XXXXXX)"; chmod 755 "$DIR"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT
mkdir -p "$DIR/pg"; chown -R postgres: "$DIR/pg"
as_pg "$PGBIN/initdb" -D "$DIR/pg/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
start() { as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/postgres.log" -w -o "-p $PORT -k $DIR/pg -c listen_addresses=127.0.0.1" "$@" >/dev/null; }
start start
URL="postgres://postgres@127.0.0.1:$PORT"
psql() { command psql -X -q -v ON_ERROR_STOP=1 -tA "$URL/${DB:-ghostworks}" "$@"; }
DB=postgres psql -c "CREATE DATABASE ghostworks"
head -c 32 /dev/urandom | od -An -vtx1 | tr -d ' \n' >"$DIR/pitr.key"; chmod 600 "$DIR/pitr.key"
export GHOSTWORKS_ENV=test DATABASE_ADMIN_URL="$URL/ghostworks" PITR_REPO="$DIR/repo" PITR_PGDATA="$DIR/pg/data" \
    PITR_PG_SOCKET_DIR="$DIR/pg" PITR_STATE_DIR="$DIR/state" PITR_KEY_FILE="$DIR/pitr.key"
"$GW" migrate >/dev/null
settings="$("$GW" pitr configure)"
for name in archive_mode archive_command archive_timeout; do
    value="$(sed -n "s/^ *$name = //p" <<<"$settings")"
    psql -c "ALTER SYSTEM SET $name = $value"
done
start restart
"$GW" pitr stanza-create >/dev/null
"$GW" pitr backup --type full >/dev/null

# Archive throughput: the dataset's WAL, from the load's start until archived.
lsn0="$(psql -c 'SELECT pg_current_wal_lsn()')"
t0=$(date +%s.%N)
"$BENCH" seed --database-url "$URL/ghostworks" --artifacts "$ARTIFACTS" \
    --workspaces 1000 --users 10000 | tail -n 1
t_loaded=$(date +%s.%N)
last="$(psql -c 'SELECT pg_walfile_name(pg_switch_wal())')"
archived() { psql -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"; }
until [[ ! "$(archived)" < "$last" ]]; do sleep 0.2; done
t_archived=$(date +%s.%N)
wal_mb="$(psql -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') / 1e6, 1)")"
db_mb="$(psql -c 'SELECT round(pg_database_size(current_database()) / 1e6, 1)')"
awk -v w="$wal_mb" -v a="$t0" -v l="$t_loaded" -v z="$t_archived" 'BEGIN {
    printf "load: %.1f MB of WAL in %.1f s; archived %.1f s after the load ended; archive throughput %.1f MB/s\n", w, l - a, z - l, w / (z - a) }'

echo "full backup: $("$GW" pitr backup --type full | sed 's/^backup //')"

# A drill while a trickle of writes runs (one commit every 100 ms).
psql -c "CREATE TABLE pitr_trickle (at timestamptz NOT NULL DEFAULT clock_timestamp())"
( while [ ! -e "$DIR/stop" ]; do psql -c "INSERT INTO pitr_trickle DEFAULT VALUES"; sleep 0.1; done ) &
sleep 5
"$GW" pitr drill --timeout 3600
touch "$DIR/stop"; wait
echo "database $db_mb MB; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
