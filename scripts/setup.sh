#!/usr/bin/env bash
# Install what gangplank's tests and demo need on a fresh Debian machine:
# the Prometheus stack from Debian packages and a virtualenv in .venv with
# gangplank and its development tools (devtools/), both editable.
# Idempotent: what is already there is not installed again.
# Usage: source scripts/setup.sh   (sets PY to the venv's python)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

missing=0
for binary in prometheus promtool prometheus-pushgateway prometheus-alertmanager amtool; do
  command -v "$binary" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 1 ]; then
  echo "setup: installing prometheus, prometheus-pushgateway, prometheus-alertmanager (Debian)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway prometheus-alertmanager >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
EXTRAS=${GANGPLANK_EXTRAS:-tensorflow}
# What each extra brings, as the modules it makes importable (pyproject.toml's optional dependencies).
declare -A BRINGS=(
  [tensorflow]="tensorflow"
  [test]="pytest hypothesis schemathesis compose grafana_foundation_sdk ruff mypy pandas"
  [examples]="PIL matplotlib fastapi uvicorn python_multipart"
)
modules="gangplank keras prometheus_client numpy scipy"
for extra in ${EXTRAS//,/ }; do
  modules="$modules ${BRINGS[$extra]:?unknown extra $extra}"
done
# Installs only when something is missing; a present package is not installed again.
if ! .venv/bin/python -c "import ${modules// /, }" >/dev/null 2>&1; then
  echo "setup: pip install -e .[$EXTRAS]"
  .venv/bin/pip install -q -e ".[$EXTRAS]"
fi
# the development tools (local stack, test servers): a separate package, devtools/
if ! .venv/bin/python -c "import gangplank_devtools, yaml, bcrypt" >/dev/null 2>&1; then
  echo "setup: pip install -e devtools"
  .venv/bin/pip install -q -e devtools
fi
PY=$PWD/.venv/bin/python
export PY
