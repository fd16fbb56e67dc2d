#!/usr/bin/env bash
# One Redis Sentinel on loopback watching a primary started by infra/redis.sh (docs/operations.md,
# "Redis failover"). Run three, each with its own port and folder, for a quorum of two.
#
#   infra/sentinel.sh start|stop|status --port PORT --dir DIR [--monitor HOST:PORT]
#                     [--name camtopo] [--down-after-ms 1000] [--timeout SECONDS]
#
# Debian's redis-sentinel if installed, else the same binary as `redis-server --sentinel`.
# Sentinel rewrites its sentinel.conf (DIR) as it learns replicas, peers and failovers, so a
# restarted sentinel knows the current primary. --monitor is needed at the first start only.
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOST="${CAMTOPO_REDIS_BIND:-127.0.0.1}"

# shellcheck source=infra/daemon.sh
source "$INFRA_DIR/daemon.sh"

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift
port=""
dir=""
monitor=""
name="camtopo"
down_after=1000
timeout=30
while (($#)); do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --monitor) monitor="$2"; shift 2 ;;
        --name) name="$2"; shift 2 ;;
        --down-after-ms) down_after="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        -h | --help) usage 0 ;;
        *) die "unknown option '$1' (see: $0 --help)" ;;
    esac
done
[[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$port'"
[[ -n "$dir" ]] || die "--dir is required (sentinel.conf, log and pid live there)"
[[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || die "--name must be a plain name, got '$name'"
[[ "$down_after" =~ ^[0-9]+$ ]] || die "--down-after-ms must be a number, got '$down_after'"
[[ -z "$monitor" || "$monitor" =~ ^[^:[:space:]]+:[0-9]+$ ]] \
    || die "--monitor must be HOST:PORT, got '$monitor'"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
PIDFILE="$dir/redis.pid"
LOGFILE="$dir/redis.log"
CONF="$dir/sentinel.conf"

server_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -Eq "redis-(server|sentinel) [^ ]*:$port( |$)" || return 1
    printf '%s' "$pid"
}
ping() { redis-cli -h "$HOST" -p "$port" ping 2>/dev/null | grep -q PONG; }

start() {
    local pid
    if pid="$(server_pid)"; then
        say "already running (pid $pid, $HOST:$port)"
        return 0
    fi
    if [[ ! -f "$CONF" ]]; then
        [[ -n "$monitor" ]] || die "no $CONF yet: --monitor HOST:PORT names the primary"
        # down-after 1 s: loopback and LAN round trips are far below it, and every second of
        # detection is a second of the processors retrying (benchmarks/redis_failover.py).
        cat >"$CONF" <<EOF
port $port
bind $HOST
dir $dir
sentinel monitor $name ${monitor%:*} ${monitor##*:} 2
sentinel down-after-milliseconds $name $down_after
sentinel failover-timeout $name 10000
sentinel parallel-syncs $name 1
EOF
    fi
    local binary=(redis-server "$CONF" --sentinel)
    command -v redis-sentinel >/dev/null 2>&1 && binary=(redis-sentinel "$CONF")
    command -v "${binary[0]}" >/dev/null 2>&1 \
        || die "redis-server not found; run 'make setup' (or infra/setup.sh) first"
    "${binary[@]}" --daemonize yes --pidfile "$PIDFILE" --logfile "$LOGFILE" \
        || { print_tail; die "sentinel failed to start (log $LOGFILE)"; }
    local deadline=$((SECONDS + timeout))
    until ping; do
        if ((SECONDS >= deadline)); then
            print_tail
            die "sentinel on $HOST:$port did not answer PING within ${timeout}s (log $LOGFILE)"
        fi
        sleep 0.05
    done
    say "ready on $HOST:$port (pid $(server_pid || echo '?'), watching '$name')"
}

status() {
    local pid
    if pid="$(server_pid)"; then
        printf 'sentinel: running, pid %s, %s:%s, %s\n' "$pid" "$HOST" "$port" "$dir"
    else
        printf 'sentinel: stopped (%s:%s, %s)\n' "$HOST" "$port" "$dir"
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
