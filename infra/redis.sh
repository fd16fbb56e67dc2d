#!/usr/bin/env bash
# Debian's redis-server on loopback with persistence on (append-only file), for the local stack.
#
#   infra/redis.sh start|stop|status [--port 6379] [--dir DIR] [--timeout SECONDS]
#                                    [--replicaof HOST:PORT]
#
# Environment defaults: CAMTOPO_REDIS_PORT, CAMTOPO_REDIS_DATA, CAMTOPO_REDIS_APPENDFSYNC
# (everysec), CAMTOPO_REDIS_AOF_REWRITE_PERCENTAGE (400), CAMTOPO_REDIS_BIND (127.0.0.1).
# Secured (docs/security.md): CAMTOPO_REDIS_ACL_USER + CAMTOPO_REDIS_ACL_PASSWORD_FILE make the
# only user (the default user is off; rights: read/write/transactions on CAMTOPO_REDIS_ACL_KEYS,
# default 'camtopo:*', nothing dangerous); CAMTOPO_REDIS_TLS_CERT_FILE, _KEY_FILE and _CA_FILE
# serve TLS only on the port. The append-only file, redis.log and redis.pid live in DIR.
# --replicaof starts a replica of that primary (AOF on too: promoted by Sentinel, it must keep
# what it holds through its own restart; infra/sentinel.sh, docs/operations.md). See docs/infra.md.
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$INFRA_DIR")"
HOST="${CAMTOPO_REDIS_BIND:-127.0.0.1}"
acl_user="${CAMTOPO_REDIS_ACL_USER:-}"
acl_password_file="${CAMTOPO_REDIS_ACL_PASSWORD_FILE:-}"
acl_keys="${CAMTOPO_REDIS_ACL_KEYS:-camtopo:*}"
tls_cert="${CAMTOPO_REDIS_TLS_CERT_FILE:-}"
tls_key="${CAMTOPO_REDIS_TLS_KEY_FILE:-}"
tls_ca="${CAMTOPO_REDIS_TLS_CA_FILE:-}"

# shellcheck source=infra/daemon.sh
source "$INFRA_DIR/daemon.sh"

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift
port="${CAMTOPO_REDIS_PORT:-6379}"
dir="${CAMTOPO_REDIS_DATA:-$REPO_DIR/.stack/redis}"
appendfsync="${CAMTOPO_REDIS_APPENDFSYNC:-everysec}"
rewrite_pct="${CAMTOPO_REDIS_AOF_REWRITE_PERCENTAGE:-400}"
timeout=30
replicaof=""
while (($#)); do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --dir | --data-dir) dir="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        --replicaof) replicaof="$2"; shift 2 ;;
        -h | --help) usage 0 ;;
        *) die "unknown option '$1' (see: $0 --help)" ;;
    esac
done
[[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$port'"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds, got '$timeout'"
[[ -z "$replicaof" || "$replicaof" =~ ^[^:[:space:]]+:[0-9]+$ ]] \
    || die "--replicaof must be HOST:PORT, got '$replicaof'"
case "$appendfsync" in always | everysec | no) ;; *) die "CAMTOPO_REDIS_APPENDFSYNC must be always|everysec|no" ;; esac
[[ "$rewrite_pct" =~ ^[0-9]+$ ]] || die "CAMTOPO_REDIS_AOF_REWRITE_PERCENTAGE must be a whole number, got '$rewrite_pct'"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
PIDFILE="$dir/redis.pid"
LOGFILE="$dir/redis.log"

# The pid if it is alive and is a redis-server on this port (guards pid reuse).
server_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -Eq "redis-server [^ ]*:$port( |$)" || return 1
    printf '%s' "$pid"
}

# How redis-cli reaches this server: over TLS, as the ACL user (its password in the
# environment, REDISCLI_AUTH, never on a command line that `ps` shows).
cli() {
    local args=(-h "$HOST" -p "$port")
    [[ -n "$tls_cert" ]] && args+=(--tls --cacert "$tls_ca")
    [[ -n "$acl_user" ]] && args+=(--user "$acl_user")
    if [[ -n "$acl_user" ]]; then
        REDISCLI_AUTH="$(cat "$acl_password_file")" redis-cli "${args[@]}" "$@"
    else
        redis-cli "${args[@]}" "$@"
    fi
}
ping() { cli ping 2>/dev/null | grep -q PONG; }

# Extra redis-server arguments of the secured mode (none by default).
security_args() {
    if [[ -n "$acl_user" ]]; then
        [[ -r "$acl_password_file" ]] \
            || die "CAMTOPO_REDIS_ACL_PASSWORD_FILE '$acl_password_file' is not readable"
        [[ "$acl_user" =~ ^[A-Za-z0-9_.-]+$ ]] || die "CAMTOPO_REDIS_ACL_USER must be a plain name"
        local hash
        hash="$(tr -d '\n' <"$acl_password_file" | sha256sum | cut -d' ' -f1)"
        # An ACL file of the server's own (mode 600): the password only as its SHA-256.
        (
            umask 077
            printf 'user default off\n' >"$dir/users.acl"
            printf 'user %s on #%s ~%s &* -@all +@read +@write +@transaction +@connection -@dangerous +info\n' \
                "$acl_user" "$hash" "$acl_keys" >>"$dir/users.acl"
        )
        printf -- '--aclfile\n%s\n' "$dir/users.acl"
    fi
    if [[ -n "$tls_cert" ]]; then
        local f
        for f in "$tls_cert" "$tls_key" "$tls_ca"; do
            [[ -r "$f" ]] || die "TLS file '$f' is not readable (set CAMTOPO_REDIS_TLS_*_FILE)"
        done
        # TLS only: the plain port is closed. Clients need not present a certificate
        # (authentication is the ACL user's), but may.
        printf -- '--port\n0\n--tls-port\n%s\n--tls-cert-file\n%s\n--tls-key-file\n%s\n' \
            "$port" "$tls_cert" "$tls_key"
        printf -- '--tls-ca-cert-file\n%s\n--tls-auth-clients\noptional\n' "$tls_ca"
    fi
}

start() {
    command -v redis-server >/dev/null 2>&1 \
        || die "redis-server not found; run 'make setup' (or infra/setup.sh) first"
    local pid
    if pid="$(server_pid)"; then
        say "already running (pid $pid, $HOST:$port)"
        return 0
    fi
    ping && die "port $port already answers PING but not from $PIDFILE: another redis holds it"
    # appendonly: every write is in the AOF before its reply, so a SIGKILL loses nothing
    # acknowledged; RDB snapshots are off since the AOF is the persistence (and forks cost
    # on 2 cores). rdbcompression no: an AOF rewrite dumps the data in RDB form, and LZF on
    # our already run-length-coded rows took 4x the CPU for 10 % less disk
    # (benchmarks/redis_rewrite.py). auto-aof-rewrite-percentage 400 (Redis: 100): at 1,000
    # cameras the checkpoints append ~1.2 GB a minute, so Redis forked a rewrite of its
    # 2.8 GB every 2 minutes; a rewrite that met the leader's topology join set the
    # detection delay's p99 (docs/research/streaming.md, round 7). The AOF grows to 5x before one.
    local secured=() text
    text="$(security_args)" || exit 1
    [[ -z "$text" ]] || mapfile -t secured <<<"$text"
    [[ -z "$replicaof" ]] || secured+=(--replicaof "${replicaof%:*}" "${replicaof##*:}")
    redis-server --bind "$HOST" --port "$port" --dir "$dir" \
        --daemonize yes --pidfile "$PIDFILE" --logfile "$LOGFILE" \
        --appendonly yes --appendfsync "$appendfsync" --save '' --rdbcompression no \
        --auto-aof-rewrite-percentage "$rewrite_pct" \
        --protected-mode yes "${secured[@]}" \
        || { print_tail; die "redis-server failed to start (log $LOGFILE)"; }
    local deadline=$((SECONDS + timeout))
    until ping; do
        if ((SECONDS >= deadline)); then
            print_tail
            die "redis on $HOST:$port did not answer PING within ${timeout}s (log $LOGFILE)"
        fi
        sleep 0.05
    done
    # Loading a large AOF answers PING with LOADING errors; PONG means the data is in.
    say "ready on $HOST:$port (pid $(server_pid || echo '?'), data $dir)"
}

status() {
    local pid
    if pid="$(server_pid)"; then
        printf 'redis: running, pid %s, %s:%s, data %s\n' "$pid" "$HOST" "$port" "$dir"
    else
        printf 'redis: stopped (%s:%s, data %s)\n' "$HOST" "$port" "$dir"
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
