#!/usr/bin/env bash
# Writes Patroni's configuration for this node, then runs Patroni.
#
# Environment (set by docker-compose.ha.yml):
#   PATRONI_NAME        this node's name, also its host name on the network
#   PATRONI_ETCD3_HOSTS etcd endpoints, e.g. etcd:2379
#   PATRONI_TTL, PATRONI_LOOP_WAIT, PATRONI_RETRY_TIMEOUT  failover timing
#   POSTGRES_USER       the superuser, which is also the schema owner (as the
#                       single-server image's POSTGRES_USER)
#   POSTGRES_DB         the database post-bootstrap.sh creates
# Secrets (files): /run/secrets/postgres_password (POSTGRES_USER's),
# pg_replication_password, pg_rewind_password; api_db_password and
# worker_db_password are read by the bootstrap SQL. The passwords go only into
# the 0600 configuration in a tmpfs, never into the environment of PostgreSQL.
set -Eeuo pipefail
umask 077

: "${PATRONI_NAME:?set PATRONI_NAME to the host name of this node}"
: "${PATRONI_ETCD3_HOSTS:?set PATRONI_ETCD3_HOSTS (e.g. etcd:2379)}"
secret() {
    local f="/run/secrets/$1"
    [ -r "$f" ] || { echo "patroni-entrypoint: secret $1 is missing (mount $f)" >&2; exit 1; }
    # Passwords are quoted as YAML single-quoted strings.
    sed "s/'/''/g" "$f"
}
superuser="$(secret postgres_password)"
replication="$(secret pg_replication_password)"
rewind="$(secret pg_rewind_password)"
config_dir="${PATRONI_CONFIG_DIR:-/run/patroni}"
mkdir -p "$config_dir"
config="$config_dir/patroni.yml"

cat >"$config" <<YAML
scope: ghostworks
name: ${PATRONI_NAME}
restapi:
  listen: 0.0.0.0:8008
  connect_address: ${PATRONI_NAME}:8008
etcd3:
  hosts: ${PATRONI_ETCD3_HOSTS}
bootstrap:
  dcs:
    ttl: ${PATRONI_TTL:-30}
    loop_wait: ${PATRONI_LOOP_WAIT:-10}
    retry_timeout: ${PATRONI_RETRY_TIMEOUT:-10}
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 200
        wal_log_hints: "on"
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - data-checksums
  post_bootstrap: /usr/local/bin/post-bootstrap.sh
postgresql:
  listen: 0.0.0.0:5432
  connect_address: ${PATRONI_NAME}:5432
  data_dir: ${PGDATA}/pgdata
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: ${config_dir}/pgpass
  authentication:
    superuser:
      username: '${POSTGRES_USER:-ghostworks}'
      password: '${superuser}'
    replication:
      username: replicator
      password: '${replication}'
    rewind:
      username: rewinder
      password: '${rewind}'
  parameters:
    unix_socket_directories: /var/run/postgresql
  pg_hba:
    - local all all trust
    - host replication replicator samenet scram-sha-256
    - host all all samenet scram-sha-256
YAML
exec patroni "$config"
