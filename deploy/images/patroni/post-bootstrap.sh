#!/usr/bin/env bash
# Patroni runs this once, on the node that initialised the cluster, with the
# superuser's connection string as $1: the same first-boot work as the
# single-server image's entrypoint (create POSTGRES_DB, run
# /docker-entrypoint-initdb.d/*.sql: the login roles and their grants).
set -Eeuo pipefail
db="${POSTGRES_DB:-ghostworks}"
psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password)
"${psql[@]}" "$1" --set db="$db" <<<'CREATE DATABASE :"db";'
for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$f" ] || continue
    echo "post-bootstrap: running $f"
    "${psql[@]}" --username "${POSTGRES_USER:-ghostworks}" --dbname "$db" -f "$f"
done
