#!/bin/bash
# Runs once, when the primary's data directory is created (docker-entrypoint-initdb.d): a role
# for the replica's base backup and streaming, and pg_stat_statements for `sluice import`.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v pass="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'pass';
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
