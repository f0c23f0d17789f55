#!/bin/sh
# Run once by the postgres image on an empty volume
# (/docker-entrypoint-initdb.d): the control plane's own database, and its
# serving role mairust_cp with a password (the control plane's schema
# creates the role only when it is missing, without a password).
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<EOSQL
CREATE DATABASE mairust_cp;
CREATE ROLE mairust_cp LOGIN PASSWORD '${CP_APP_PASSWORD}';
EOSQL
