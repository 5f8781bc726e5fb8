#!/usr/bin/env bash
# gangplank's MNIST demo in one command (Debian/Ubuntu, no Docker needed):
#
#     bash scripts/demo.sh
#
# 1. Installs what is missing: the Debian packages prometheus,
#    prometheus-pushgateway and prometheus-alertmanager (apt-get,
#    --no-install-recommends; sudo when not root) and a virtualenv .venv with
#    this project (pip install -e '.[tensorflow,examples]' -e devtools).
# 2. Starts Pushgateway, Prometheus and Alertmanager on 127.0.0.1 with the
#    rules of deploy/prometheus (python -m gangplank_devtools.localstack), on the
#    default ports 9091/9090/9093 when they are free, else on free ones. The
#    Pushgateway takes only pushes with basic auth (a random password the stack
#    writes to its workdir; the demo's exporters push with it).
# 3. Runs examples/mnist/demo.py: trains the convnet, evaluates it, trains the
#    wrong model, runs the three production scenarios at once, prints the
#    gangplank metrics on the gateway and the alerts Prometheus fires, and
#    draws the story from Prometheus into one PNG (its path is printed).
# 4. Stops the stack when it ends, fails or is interrupted (trap EXIT); with
#    --keep, it leaves the stack running when the demo ends (not when it is
#    interrupted) and prints the URLs to open and the command that stops it.
#
# --keep is this script's; other arguments go to demo.py (e.g. --epochs 1
# --windows 5; --help lists them).
# Environment:
#   PYTHON=/path/to/python   an interpreter with gangplank and TensorFlow (default: .venv, created if missing)
#   MNIST_NPZ=/path/mnist.npz  local MNIST (default: ../shared/data/mnist.npz if present, else Keras downloads it)
#   PGW_PORT, PROM_PORT, AM_PORT  ports to use
set -euo pipefail

STARTED=$SECONDS
KEEP=0 ARGS=()
for arg in "$@"; do
  if [[ $arg == --keep ]]; then KEEP=1; else ARGS+=("$arg"); fi
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\n### %s\n' "$*"; }

# --- 1. what is missing ---------------------------------------------------------------
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "missing: $*; install them with your package manager (or use deploy/prometheus/docker-compose.yml)" >&2
    exit 1
  fi
  say "Installing $* (apt-get, --no-install-recommends)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
for binary in prometheus prometheus-pushgateway prometheus-alertmanager; do
  command -v "$binary" >/dev/null || [[ -x /usr/bin/$binary ]] || missing+=("$binary")
done
if [[ -z ${PYTHON:-} ]]; then
  command -v python3 >/dev/null || missing+=(python3 python3-venv)
fi
if ((${#missing[@]})); then
  apt_install "${missing[@]}"
  # On machines with systemd the packages start their services on every
  # interface (0.0.0.0:9090, :9091, :9093). The demo runs its own on 127.0.0.1.
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    for service in prometheus prometheus-pushgateway prometheus-alertmanager; do
      if [[ " ${missing[*]} " == *" $service "* ]] && systemctl is-active --quiet "$service" 2>/dev/null; then
        echo "stopping and disabling the $service service the package started (systemctl enable --now $service brings it back)"
        $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
      fi
    done
  fi
fi

if [[ -z ${PYTHON:-} ]]; then
  PYTHON=$ROOT/.venv/bin/python
  if [[ ! -x $PYTHON ]]; then
    say "Creating the virtualenv .venv"
    if ! python3 -m venv .venv; then  # Debian/Ubuntu keep venv's pip bootstrap in python3-venv
      rm -rf .venv
      apt_install python3-venv
      python3 -m venv .venv
    fi
  fi
  if ! "$PYTHON" -c 'import gangplank, gangplank_devtools, bcrypt, keras, tensorflow, PIL, matplotlib, fastapi, uvicorn, multipart' 2>/dev/null; then
    say "Installing gangplank with TensorFlow into .venv (pip install -e '.[tensorflow,examples]' -e devtools)"
    "$PYTHON" -m pip install -q --upgrade pip
    "$PYTHON" -m pip install -q -e ".[tensorflow,examples]" -e devtools
  fi
fi

# --- 2. the local stack -----------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {  # the default if free, else any free port
  if port_free "$1"; then echo "$1"; else "$PYTHON" -c 'from gangplank_devtools import free_port; print(free_port())'; fi
}
PGW_PORT=${PGW_PORT:-$(pick_port 9091)}
PROM_PORT=${PROM_PORT:-$(pick_port 9090)}
AM_PORT=${AM_PORT:-$(pick_port 9093)}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gangplank-demo.XXXXXX")
STACK_PID="" DEMO_PID="" INTERRUPTED=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $DEMO_PID ]] && kill -0 "$DEMO_PID" 2>/dev/null; then
    kill -TERM "$DEMO_PID" 2>/dev/null || true
    wait "$DEMO_PID" 2>/dev/null || true
  fi
  if ((KEEP && !INTERRUPTED)) && [[ -n $STACK_PID ]] && kill -0 "$STACK_PID" 2>/dev/null; then
    say "The stack keeps running (--keep)"
    echo "Prometheus    http://127.0.0.1:$PROM_PORT/alerts  (and /graph, /rules)"
    echo "Pushgateway   http://127.0.0.1:$PGW_PORT  (basic auth: user gangplank, password in $WORK/stack/secrets/pushgateway_password)"
    echo "Alertmanager  http://127.0.0.1:$AM_PORT"
    echo "logs and data: $WORK/stack"
    echo "stop it with:  $PYTHON -m gangplank_devtools.localstack down --pid-file $WORK/stack.pid"
  else
    if [[ -n $STACK_PID ]] && kill -0 "$STACK_PID" 2>/dev/null; then
      echo "stopping the local stack (pid $STACK_PID)"
      kill -TERM "$STACK_PID" 2>/dev/null || true
      wait "$STACK_PID" 2>/dev/null || true
    fi
    if ((rc == 0)); then
      rm -rf "$WORK"
    else
      echo "demo failed (exit status $rc); stack logs kept in $WORK" >&2
    fi
  fi
  local elapsed=$((SECONDS - STARTED))
  echo "demo run time: $((elapsed / 60)) min $((elapsed % 60)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'INTERRUPTED=1; exit 130' INT
trap 'INTERRUPTED=1; exit 143' TERM

say "Starting Pushgateway :$PGW_PORT, Prometheus :$PROM_PORT, Alertmanager :$AM_PORT on 127.0.0.1 (rules from deploy/prometheus)"
"$PYTHON" -m gangplank_devtools.localstack up --config-dir deploy/prometheus --workdir "$WORK/stack" --pid-file "$WORK/stack.pid" \
  --pushgateway-port "$PGW_PORT" --prometheus-port "$PROM_PORT" --alertmanager-port "$AM_PORT" >"$WORK/stack.log" 2>&1 &
STACK_PID=$!
for _ in $(seq 600); do  # the pid file appears once Prometheus scrapes the gateway and knows Alertmanager
  [[ -s $WORK/stack.pid ]] && break
  if ! kill -0 "$STACK_PID" 2>/dev/null; then cat "$WORK/stack.log" >&2; STACK_PID=""; exit 1; fi
  sleep 0.1
done
[[ -s $WORK/stack.pid ]] || { echo "the local stack did not come up in 60 s" >&2; cat "$WORK/stack.log" >&2; exit 1; }
cat "$WORK/stack.log"

# --- 3. the MNIST story ------------------------------------------------------------------
DATA=()
MNIST_NPZ=${MNIST_NPZ:-$(cd "$ROOT/.." && pwd)/shared/data/mnist.npz}
if [[ -f $MNIST_NPZ ]]; then DATA=(--data "$MNIST_NPZ"); fi  # else: keras.datasets.mnist.load_data() downloads it
# The local stack's Pushgateway takes only pushes with basic auth; its password is in the stack's workdir.
"$PYTHON" examples/mnist/demo.py --pgw "127.0.0.1:$PGW_PORT" --pgw-password-file "$WORK/stack/secrets/pushgateway_password" \
  --prometheus "http://127.0.0.1:$PROM_PORT" "${DATA[@]}" "${ARGS[@]}" &
DEMO_PID=$!
wait "$DEMO_PID"  # in the background so that Ctrl-C and SIGTERM reach the trap at once
DEMO_PID=""
