#!/bin/sh
# Patroni runs this once, on the node that initialises the cluster, with a superuser
# connection URL: the application's role and database, and pg_stat_statements for `sluice import`.
set -eu
psql -v ON_ERROR_STOP=1 "$1" <<'SQL'
CREATE ROLE sluice LOGIN PASSWORD 'sluice';
CREATE DATABASE sluice OWNER sluice;
\c sluice
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL
