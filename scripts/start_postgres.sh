#!/usr/bin/env bash
# Start a local PostgreSQL server for edgeopt search (and its tests) and print its URL.
#
#   bash scripts/start_postgres.sh            # prints postgresql://edgeopt:edgeopt@localhost:5432/edgeopt
#   EDGEOPT_PG_DB=edgeopt_test bash scripts/start_postgres.sh
#
# Debian/Ubuntu, as root (or with sudo): installs the `postgresql` package when missing, creates and
# starts the default cluster (pg_createcluster / pg_ctlcluster), then creates a login role and a
# database owned by it. Idempotent: a running server and existing role/database are kept.
# Not for production: the password is the role name unless EDGEOPT_PG_PASSWORD is set.
set -euo pipefail
DB="${EDGEOPT_PG_DB:-edgeopt}"
ROLE="${EDGEOPT_PG_USER:-edgeopt}"
PASSWORD="${EDGEOPT_PG_PASSWORD:-$ROLE}"
SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )
export DEBIAN_FRONTEND=noninteractive

if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  $SUDO apt-get install -y -q postgresql >/dev/null 2>&1 || \
    { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q postgresql >/dev/null; }
fi
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main"{found=1} END{exit !found}'; then
  $SUDO pg_createcluster "$VERSION" main >&2
fi
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" && $4=="online"{ok=1} END{exit !ok}'; then
  # pg_ctlcluster may print notes ("Removed stale pid file.") on stdout; stdout is the URL alone.
  $SUDO pg_ctlcluster "$VERSION" main start >&2
fi
PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main"{print $3}')
for _ in $(seq 1 30); do
  pg_isready -q -h localhost -p "$PORT" && break
  sleep 1
done
pg_isready -q -h localhost -p "$PORT" || { echo "error: PostgreSQL $VERSION did not become ready on port $PORT" >&2; exit 1; }

psql_admin() { $SUDO runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -tAc "$1"; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname='$ROLE'")" != 1 ]; then
  psql_admin "CREATE ROLE \"$ROLE\" LOGIN PASSWORD '$PASSWORD'" >/dev/null
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname='$DB'")" != 1 ]; then
  psql_admin "CREATE DATABASE \"$DB\" OWNER \"$ROLE\"" >/dev/null
fi
echo "postgresql://$ROLE:$PASSWORD@localhost:$PORT/$DB"
