# Sourced by infra/redis.sh, infra/registry.sh and infra/sentinel.sh: what a script that runs one
# server in the background needs besides starting it. The script defines HOST, port, PIDFILE,
# LOGFILE and server_pid() (the pid if alive and truly its server: guards pid reuse) before
# calling start/stop helpers; die, say and usage are defined here, named for the script.

DAEMON_SCRIPT="${BASH_SOURCE[1]}"
DAEMON_NAME="$(basename "$DAEMON_SCRIPT")"

die() {
    printf '%s: error: %s\n' "$DAEMON_NAME" "$*" >&2
    exit 1
}
say() { printf '%s: %s\n' "$DAEMON_NAME" "$*" >&2; }

# The script's header comment (after the shebang, up to the first line that is not a comment).
usage() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$DAEMON_SCRIPT"
    exit "${1:-2}"
}

# The end of the server's log, on stderr (after a failed start).
print_tail() {
    [[ -s "$LOGFILE" ]] || return 0
    printf -- '--- last lines of %s ---\n' "$LOGFILE" >&2
    tail -n 25 "$LOGFILE" >&2
}

# SIGTERM (Redis: SHUTDOWN, which fsyncs the AOF first), then SIGKILL after 20 s.
stop() {
    local pid deadline
    if ! pid="$(server_pid)"; then
        rm -f "$PIDFILE"
        say "not running ($HOST:$port)"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid ignored SIGTERM for 20s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
    rm -f "$PIDFILE"
    say "stopped ($HOST:$port)"
}
