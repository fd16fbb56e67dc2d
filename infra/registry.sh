#!/usr/bin/env bash
# Apicurio Registry on loopback: a schema registry that speaks the Confluent Schema Registry
# REST API at /apis/ccompat/v7, from the files infra/setup.sh resolved. In-memory storage.
#
#   infra/registry.sh start|stop|status [--port 8081] [--dir DIR] [--timeout SECONDS]
#
# Environment defaults: CAMTOPO_REGISTRY_PORT, CAMTOPO_REGISTRY_DATA, CAMTOPO_CACHE,
# REGISTRY_HEAP_OPTS (default -Xmx256m -Xms64m). registry.log and registry.pid live in DIR.
# See docs/infra.md.
set -euo pipefail

# The release, pinned here only: infra/setup.sh and camtopo/operations/localstack.py read this line.
APICURIO_VERSION=2.6.13.Final

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$INFRA_DIR")"
CACHE_DIR="${CAMTOPO_CACHE:-$HOME/.cache/camtopo}"
HOME_DIR="$CACHE_DIR/apicurio-registry-$APICURIO_VERSION"
JAR="$HOME_DIR/apicurio-registry-app-$APICURIO_VERSION-runner.jar"
HOST=127.0.0.1

# shellcheck source=infra/daemon.sh
source "$INFRA_DIR/daemon.sh"

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift
port="${CAMTOPO_REGISTRY_PORT:-8081}"
dir="${CAMTOPO_REGISTRY_DATA:-$REPO_DIR/.stack/registry}"
timeout=60
while (($#)); do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --dir | --data-dir) dir="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        -h | --help) usage 0 ;;
        *) die "unknown option '$1' (see: $0 --help)" ;;
    esac
done
[[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$port'"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds, got '$timeout'"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
PIDFILE="$dir/registry.pid"
LOGFILE="$dir/registry.log"

# The pid if it is alive and is the registry on this port (guards pid reuse).
server_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-Dquarkus.http.port=$port .*apicurio-registry-app" \
        || return 1
    printf '%s' "$pid"
}

# Ready = the Confluent-compatible API answers (Quarkus opens the port a little before that).
ready() {
    curl -fsS -o /dev/null --max-time 2 "http://$HOST:$port/apis/ccompat/v7/subjects" 2>/dev/null
}
port_open() { (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; }

start() {
    [[ -f "$HOME_DIR/.complete" && -f "$JAR" ]] \
        || die "no Apicurio Registry $APICURIO_VERSION in $HOME_DIR; run 'make setup' (or infra/setup.sh) first"
    command -v java >/dev/null 2>&1 || die "java not found; run 'make setup' (or infra/setup.sh) first"
    local pid
    if pid="$(server_pid)"; then
        say "already running (pid $pid, $HOST:$port)"
        return 0
    fi
    port_open && die "port $port is already in use by another process"
    local offset
    offset=$(($(stat -c %s "$LOGFILE" 2>/dev/null || echo 0) + 1))
    # In-memory storage (the app's default): schemas live as long as the process, so a restart
    # forgets them and producers register again at their start. Quarkus logs to stdout.
    # shellcheck disable=SC2086  # REGISTRY_HEAP_OPTS holds several options
    nohup java ${REGISTRY_HEAP_OPTS:--Xmx256m -Xms64m} -XX:+UseSerialGC \
        -Dquarkus.http.port="$port" -Dquarkus.http.host="$HOST" \
        -Dquarkus.log.console.color=false \
        -jar "$JAR" >>"$LOGFILE" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local deadline=$((SECONDS + timeout))
    until ready; do
        if ! server_pid >/dev/null; then
            tail -c "+$offset" "$LOGFILE" | tail -n 25 >&2
            die "the registry exited during start-up (log $LOGFILE)"
        fi
        if ((SECONDS >= deadline)); then
            print_tail
            stop >/dev/null 2>&1 || true
            die "the registry on $HOST:$port was not ready within ${timeout}s; stopped it (log $LOGFILE)"
        fi
        sleep 0.2
    done
    say "ready on http://$HOST:$port/apis/ccompat/v7 (pid $(server_pid || echo '?'), log $LOGFILE)"
}

status() {
    local pid
    if pid="$(server_pid)"; then
        printf 'registry: running, pid %s, http://%s:%s/apis/ccompat/v7\n' "$pid" "$HOST" "$port"
    else
        printf 'registry: stopped (%s:%s)\n' "$HOST" "$port"
        return 3
    fi
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    -h | --help | help) usage 0 ;;
    *) die "unknown command '$cmd' (start|stop|status)" ;;
esac
