# Shared helpers for the scripts in this folder. Source it; do not run it.
# shellcheck shell=bash

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

log() { printf '\033[1m==> [%s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The Debian packages druid-sync builds, tests and demonstrates with.
DEBIAN_PACKAGES=(
  librabbitmq-dev libssl-dev libcurl4-openssl-dev libsystemd-dev libmimalloc-dev pkg-config
  rabbitmq-server python3 python3-aiohttp python3-httptools python3-uvloop python3-pika python3-aio-pika
  openssl ca-certificates curl nginx-light systemd procps iproute2
  dpkg-dev binutils file
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
# Usage: start_broker LOGS [CERTS]. With CERTS, a folder made by scripts/make-test-certs, a broker
# started here also takes AMQP over TLS on port 5671 (next to the plain 5672), presenting
# CERTS/server.pem and checking client certificates against CERTS/ca.pem when a client sends one.
# A broker that was already running is only checked: without such a listener the TLS tests fail,
# and a warning here says why.
start_broker() {
  STARTED_BROKER_PID=""
  local logs="$1" certs="${2:-}"
  if [ -n "$certs" ]; then
    write_broker_tls_config "$certs" >"$certs/rabbitmq.conf"
    chmod 644 "$certs/rabbitmq.conf"
  fi
  if broker_running; then
    log "RabbitMQ already running"
    [ -z "$certs" ] || check_broker_tls "$certs"
    return
  fi
  log "starting RabbitMQ${certs:+ (plain AMQP on 5672, TLS on 5671)}"
  mkdir -p "$logs"
  # Without systemd (containers, CI), run the server directly; it drops to the rabbitmq user
  # (su keeps the environment, so RABBITMQ_CONFIG_FILE reaches it).
  if [ -n "$certs" ]; then
    RABBITMQ_CONFIG_FILE="$(cd "$certs" && pwd)/rabbitmq.conf" rabbitmq-server >"$logs/rabbitmq.log" 2>&1 &
  else
    rabbitmq-server >"$logs/rabbitmq.log" 2>&1 &
  fi
  STARTED_BROKER_PID=$!
  for _ in $(seq 1 120); do
    broker_running && break
    sleep 1
  done
  rabbitmqctl -q await_startup >/dev/null 2>&1 || { tail -50 "$logs/rabbitmq.log" >&2; echo "RabbitMQ did not start" >&2; exit 1; }
  [ -z "$certs" ] || check_broker_tls "$certs"
}

# Prints a new-style rabbitmq.conf that keeps the plain listener on 5672 and adds a TLS listener
# on 5671 with the certificates in $1 (an absolute path is written; it must not contain spaces).
write_broker_tls_config() {
  local certs
  certs=$(cd "$1" && pwd)
  cat <<CONFIG
# Written by start_broker in scripts/lib.sh for the druid-sync TLS tests. Test certificates only.
listeners.tcp.default = 5672
listeners.ssl.default = 5671
ssl_options.cacertfile = $certs/ca.pem
ssl_options.certfile = $certs/server.pem
ssl_options.keyfile = $certs/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
CONFIG
}

# Warns loudly, with the fix, when nothing on localhost:5671 serves a certificate that verifies
# against $1/ca.pem for the name localhost: the TLS tests will then fail. Never fails itself.
check_broker_tls() {
  local certs="$1" answer
  if answer=$(openssl s_client -connect localhost:5671 -verify_hostname localhost -CAfile "$certs/ca.pem" \
    -verify_return_error -brief </dev/null 2>&1); then
    return 0
  fi
  printf '\033[1;31m==> WARNING: the running RabbitMQ has no TLS listener on localhost:5671 with a certificate from %s/ca.pem: the TLS tests will fail.\033[0m\n' "$certs" >&2
  printf '    openssl s_client: %s\n' "$(printf '%s\n' "$answer" | grep -m1 -iE 'error|refused|fail' || printf '%s\n' "$answer" | head -1)" >&2
  printf '    Fix: stop it (rabbitmqctl stop) and run scripts/test again, which starts one with TLS, or start it yourself with\n    RABBITMQ_CONFIG_FILE=%s rabbitmq-server (the config from write_broker_tls_config in scripts/lib.sh).\n' "$(cd "$certs" && pwd)/rabbitmq.conf" >&2
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
