# Shared helpers for the scripts in this folder. Source it; do not run it.
# shellcheck shell=bash

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The Debian packages druid-sync builds, tests and demonstrates with.
DEBIAN_PACKAGES=(
  librabbitmq-dev libssl-dev libcurl4-openssl-dev libsystemd-dev pkg-config
  rabbitmq-server python3 python3-aiohttp python3-pika python3-aio-pika
  openssl ca-certificates nginx-light systemd procps iproute2
)

# Installs whatever of DEBIAN_PACKAGES is missing (needs root).
install_packages() {
  local missing=()
  for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  command -v swift >/dev/null || { echo "swift is not on PATH: install the Swift 6 toolchain (swift.org) first" >&2; exit 1; }
}

broker_running() { rabbitmqctl -q status >/dev/null 2>&1; }

# Starts RabbitMQ in the background unless one already answers. Sets STARTED_BROKER_PID.
start_broker() {
  STARTED_BROKER_PID=""
  if broker_running; then
    log "RabbitMQ already running"
    return
  fi
  log "starting RabbitMQ"
  local logs="$1"
  mkdir -p "$logs"
  # Without systemd (containers, CI), run the server directly; it drops to the rabbitmq user.
  rabbitmq-server >"$logs/rabbitmq.log" 2>&1 &
  STARTED_BROKER_PID=$!
  for _ in $(seq 1 120); do
    broker_running && break
    sleep 1
  done
  rabbitmqctl -q await_startup >/dev/null 2>&1 || { tail -50 "$logs/rabbitmq.log" >&2; echo "RabbitMQ did not start" >&2; exit 1; }
}

stop_broker() {
  if [ -n "${STARTED_BROKER_PID:-}" ]; then
    log "stopping the RabbitMQ started here"
    rabbitmqctl -q stop >/dev/null 2>&1 || kill "$STARTED_BROKER_PID" 2>/dev/null || true
  fi
}

# Starts the DRUID emulator on 127.0.0.1:$1 unless something already listens there.
# Sets STARTED_EMULATOR_PID.
start_emulator() {
  local port="$1" logs="$2"
  shift 2
  STARTED_EMULATOR_PID=""
  if curl -fsS "http://127.0.0.1:$port/admin/health" >/dev/null 2>&1; then
    log "DRUID emulator already listening on port $port"
    return
  fi
  log "starting the DRUID emulator on port $port"
  mkdir -p "$logs"
  /usr/bin/python3 "$(repo_root)/deploy/emulator/druid_emulator.py" --port "$port" "$@" >"$logs/emulator.log" 2>&1 &
  STARTED_EMULATOR_PID=$!
  for _ in $(seq 1 50); do
    grep -q "listening" "$logs/emulator.log" 2>/dev/null && return
    sleep 0.2
  done
  cat "$logs/emulator.log" >&2
  echo "the DRUID emulator did not start" >&2
  exit 1
}

stop_emulator() {
  if [ -n "${STARTED_EMULATOR_PID:-}" ]; then kill "$STARTED_EMULATOR_PID" 2>/dev/null || true; fi
}
