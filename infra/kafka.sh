#!/usr/bin/env bash
# A real Apache Kafka broker on loopback, in KRaft mode (no ZooKeeper), from the jars that
# infra/setup.sh resolved. One node by default (combined broker + controller); --brokers 3 runs
# three combined nodes on consecutive ports that form one controller quorum, for fault tests.
#
#   infra/kafka.sh start|stop|status [--port 9092] [--brokers 1] [--data-dir DIR]
#                  [--controller-port PORT] [--node I] [--timeout SECONDS]
#
# Environment defaults: CAMTOPO_KAFKA_PORT, CAMTOPO_KAFKA_BROKERS, CAMTOPO_KAFKA_DATA,
# CAMTOPO_KAFKA_CONTROLLER_PORT, CAMTOPO_CACHE, KAFKA_HEAP_OPTS (default -Xmx512m -Xms128m),
# CAMTOPO_KAFKA_VERSION (default: infra/kafka/pom.xml's; e.g. 3.9.1, after infra/setup.sh with it).
# Node I (1-based) listens on PORT+I-1 and its controller on CONTROLLER_PORT+I-1
# (default PORT+100). Each node keeps its properties, log segments, server.log, stdout.log
# and kafka.pid under DIR/node-I. See docs/infra.md.
# Secured (docs/security.md): CAMTOPO_KAFKA_TLS_CERT_FILE, _KEY_FILE (PEM, PKCS#8) and _CA_FILE
# make the client port a SASL_SSL listener (SCRAM-SHA-512 over TLS; inter-broker traffic too,
# as the admin user), with ACLs enforced (StandardAuthorizer, nothing allowed without an ACL);
# CAMTOPO_KAFKA_ADMIN_PASSWORD_FILE holds the password of the super user
# CAMTOPO_KAFKA_ADMIN_USER (default admin), created when the storage is formatted (so a
# fresh --data-dir). The controller listener stays PLAINTEXT on loopback.
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$INFRA_DIR")"
CACHE_DIR="${CAMTOPO_CACHE:-$HOME/.cache/camtopo}"
HOST=127.0.0.1
tls_cert="${CAMTOPO_KAFKA_TLS_CERT_FILE:-}"
tls_key="${CAMTOPO_KAFKA_TLS_KEY_FILE:-}"
tls_ca="${CAMTOPO_KAFKA_TLS_CA_FILE:-}"
admin_user="${CAMTOPO_KAFKA_ADMIN_USER:-admin}"
admin_password_file="${CAMTOPO_KAFKA_ADMIN_PASSWORD_FILE:-}"

die() {
    printf 'kafka.sh: error: %s\n' "$*" >&2
    exit 1
}
say() { printf 'kafka.sh: %s\n' "$*" >&2; }

usage() {
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift
port="${CAMTOPO_KAFKA_PORT:-9092}"
brokers="${CAMTOPO_KAFKA_BROKERS:-1}"
data_dir="${CAMTOPO_KAFKA_DATA:-$REPO_DIR/.stack/kafka}"
controller_port="${CAMTOPO_KAFKA_CONTROLLER_PORT:-}"
only_node=""
timeout=90
while (($#)); do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --brokers) brokers="$2"; shift 2 ;;
        --data-dir) data_dir="$2"; shift 2 ;;
        --controller-port) controller_port="$2"; shift 2 ;;
        --node) only_node="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        -h | --help) usage 0 ;;
        *) die "unknown option '$1' (see: $0 --help)" ;;
    esac
done
[[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$port'"
[[ "$brokers" =~ ^[1-9]$ ]] || die "--brokers must be 1..9, got '$brokers'"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds, got '$timeout'"
controller_port="${controller_port:-$((port + 100))}"
[[ "$controller_port" =~ ^[0-9]+$ ]] || die "--controller-port must be a number"
mkdir -p "$data_dir"
data_dir="$(cd "$data_dir" && pwd)"

if [[ -n "$only_node" ]]; then
    ((only_node >= 1 && only_node <= brokers)) || die "--node must be in 1..$brokers, got '$only_node'"
    nodes=("$only_node")
else
    mapfile -t nodes < <(seq 1 "$brokers")
fi

# The Kafka release: CAMTOPO_KAFKA_VERSION (e.g. 3.9.1), else <kafka.version> in the pom; its
# jars are those infra/setup.sh resolved for the same setting.
kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$INFRA_DIR/kafka/pom.xml" | head -n 1
}
KAFKA_VERSION="${CAMTOPO_KAFKA_VERSION:-$(kafka_version)}"
LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
# Kafka 4 logs through log4j2, Kafka 3 through log4j 1.x (reload4j): each has its own flag and
# file format (broker and storage tool).
if [[ "$KAFKA_VERSION" == 3.* ]]; then
    log_flag() { printf -- '-Dlog4j.configuration=file:%s/kafka/%s.properties' "$INFRA_DIR" "$1"; }
else
    log_flag() { printf -- '-Dlog4j2.configurationFile=%s/kafka/%s2.properties' "$INFRA_DIR" "$1"; }
fi

node_dir() { printf '%s/node-%s' "$data_dir" "$1"; }
node_port() { printf '%s' $((port + $1 - 1)); }
node_controller_port() { printf '%s' $((controller_port + $1 - 1)); }

# The pid of node $1 if that process is alive and is this node's broker (guards pid reuse).
node_pid() {
    local pidfile pid
    pidfile="$(node_dir "$1")/kafka.pid"
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(node_dir "$1")/server.properties" || return 1
    printf '%s' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

write_properties() {
    local i="$1" dir voters="" j replication min_isr
    dir="$(node_dir "$i")"
    for j in $(seq 1 "$brokers"); do
        voters+="${voters:+,}$j@$HOST:$(node_controller_port "$j")"
    done
    replication=$((brokers < 3 ? brokers : 3))
    # With 3 nodes, min ISR 2 keeps acks=all writes going while one node is down.
    min_isr=$((replication > 1 ? 2 : 1))
    local client=PLAINTEXT
    [[ -n "$tls_cert" ]] && client=SASL_SSL
    # Mode 600: in secured mode it holds the admin password (the broker's own login).
    : >"$dir/server.properties"
    chmod 600 "$dir/server.properties"
    cat >"$dir/server.properties" <<EOF
# Written by infra/kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=$client://$HOST:$(node_port "$i"),CONTROLLER://$HOST:$(node_controller_port "$i")
advertised.listeners=$client://$HOST:$(node_port "$i")
controller.listener.names=CONTROLLER
inter.broker.listener.name=$client
listener.security.protocol.map=$client:$client,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
# camtopo creates its topics with their configured partition counts (processors/topics.py, at
# camtopo stack up, process and produce); a client's first request must not create one
# with num.partitions=1 instead (the processor would own 1 of its 8 occupancy partitions and
# count nothing). Tests create their topics explicitly.
auto.create.topics.enable=false
default.replication.factor=$replication
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replication
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_isr
# Fewer internal partitions than the default 50: quicker first group/transaction on 2 cores.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
# Tests join consumer groups often; the default 3 s delay would slow every one of them.
group.initial.rebalance.delay.ms=0
# A SIGKILLed node's old registration blocks its restart until this session expires (default
# 9 s); a shorter one makes crash-restart and fail-over in fault tests quick on loopback.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
    [[ -n "$tls_cert" ]] && secured_properties "$i" >>"$dir/server.properties"
    return 0
}

# Secured mode: the settings of the SASL_SSL listener and of the authorizer.
check_secured() {
    [[ -n "$tls_cert" ]] || return 0
    local f
    for f in "$tls_cert" "$tls_key" "$tls_ca"; do
        [[ -n "$f" && -r "$f" ]] || die "TLS file '$f' is not readable (set CAMTOPO_KAFKA_TLS_CERT_FILE, _KEY_FILE and _CA_FILE)"
    done
    [[ -n "$admin_password_file" && -r "$admin_password_file" ]] \
        || die "secured mode needs CAMTOPO_KAFKA_ADMIN_PASSWORD_FILE (the super user's password)"
    [[ "$admin_user" =~ ^[A-Za-z0-9_.-]+$ ]] || die "CAMTOPO_KAFKA_ADMIN_USER must be a plain name"
    # It goes into a SCRAM argument and a JAAS line: no quotes, commas or brackets.
    [[ "$(tr -d '\n' <"$admin_password_file")" =~ ^[A-Za-z0-9._~+/-]{12,}$ ]] \
        || die "the admin password must be 12+ characters of [A-Za-z0-9._~+/-] (openssl rand -hex 32)"
}

secured_properties() {
    local dir password
    dir="$(node_dir "$1")"
    password="$(tr -d '\n' <"$admin_password_file")"
    # Kafka's PEM keystore file: the private key (PKCS#8) and the certificate chain in one file.
    ( umask 077; cat "$tls_key" "$tls_cert" >"$dir/keystore.pem" )
    cat <<EOF
# Secured mode (CAMTOPO_KAFKA_TLS_*): SASL_SSL with SCRAM-SHA-512 on the client port, ACLs on.
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$admin_user" password="$password";
ssl.keystore.type=PEM
ssl.keystore.location=$dir/keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls_ca
ssl.client.auth=requested
ssl.endpoint.identification.algorithm=https
ssl.enabled.protocols=TLSv1.3,TLSv1.2
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
# ANONYMOUS: the PLAINTEXT controller listener's principal (broker <-> controller, loopback).
super.users=User:$admin_user;User:ANONYMOUS
EOF
}

format_node() {
    local i="$1" dir cluster_id_file out
    dir="$(node_dir "$i")"
    [[ -f "$dir/data/meta.properties" ]] && return 0
    cluster_id_file="$data_dir/cluster.id"
    local scram=()
    # Secured mode: the super user's SCRAM credential is part of the initial metadata.
    [[ -n "$tls_cert" ]] && scram=(--add-scram \
        "SCRAM-SHA-512=[name=$admin_user,password=$(tr -d '\n' <"$admin_password_file")]")
    if ! out="$(java -cp "$LIBS/*" "$(log_flag tools-log4j)" \
        kafka.tools.StorageTool format -t "$(cat "$cluster_id_file")" -c "$dir/server.properties" \
        "${scram[@]+"${scram[@]}"}" 2>&1)"; then
        printf '%s\n' "$out" >&2
        die "formatting storage of node $i in $dir/data failed"
    fi
}

# A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what
# `StorageTool random-uuid` prints, without a JVM start). Kafka avoids a leading '-'.
new_cluster_id() {
    local id="-"
    while [[ "$id" == -* ]]; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    printf '%s\n' "$id"
}

print_tail() {
    local dir
    dir="$(node_dir "$1")"
    for f in "$dir/server.log" "$dir/stdout.log"; do
        [[ -s "$f" ]] || continue
        printf -- '--- last lines of %s ---\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
}

check_layout() {
    # A data dir formatted for another quorum cannot join this one; say so instead of hanging.
    local layout="brokers=$brokers port=$port controller_port=$controller_port"
    local file="$data_dir/layout"
    if [[ -f "$file" && "$(cat "$file")" != "$layout" ]]; then
        die "$data_dir was set up with '$(cat "$file")', not '$layout'; stop it and remove the dir, or use another --data-dir"
    fi
    printf '%s\n' "$layout" >"$file"
    # Kafka 3.9 cannot read metadata a 4.x broker wrote ("Can't read version 4 of
    # BrokerEndpoint", fatal at start); 3.9 -> 4.x is fine. Say so instead of a Java stack.
    file="$data_dir/kafka-version"
    if [[ -f "$file" && "$(cut -d. -f1 "$file")" > "${KAFKA_VERSION%%.*}" ]]; then
        die "$data_dir was written by Kafka $(cat "$file"); Kafka $KAFKA_VERSION cannot read it: use another --data-dir or remove it"
    fi
    printf '%s\n' "$KAFKA_VERSION" >"$file"
}

start() {
    [[ -f "$LIBS/.complete" ]] || die "no Kafka $KAFKA_VERSION jars in $LIBS; run 'make setup' (or infra/setup.sh) first"
    command -v java >/dev/null 2>&1 || die "java not found; run 'make setup' (or infra/setup.sh) first"
    check_layout
    check_secured
    local i dir pid started=() offsets=() formats=()
    [[ -s "$data_dir/cluster.id" ]] || new_cluster_id >"$data_dir/cluster.id"
    for i in "${nodes[@]}"; do
        dir="$(node_dir "$i")"
        mkdir -p "$dir"
        if pid="$(node_pid "$i")"; then
            say "node $i already running (pid $pid, $HOST:$(node_port "$i"))"
            continue
        fi
        if port_open "$(node_port "$i")" || port_open "$(node_controller_port "$i")"; then
            die "port $(node_port "$i") or $(node_controller_port "$i") is already in use by another process"
        fi
        write_properties "$i"
        started+=("$i")
    done
    ((${#started[@]})) || return 0
    # Formatting starts a JVM per node; in parallel they cost one start-up, not N.
    for i in "${started[@]}"; do
        format_node "$i" &
        formats+=($!)
    done
    for pid in "${formats[@]}"; do wait "$pid" || exit 1; done
    for i in "${started[@]}"; do
        dir="$(node_dir "$i")"
        # Remember where this start's lines begin, so an older "started" line is not taken.
        offsets[i]=$(($(stat -c %s "$dir/server.log" 2>/dev/null || echo 0) + 1))
        # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS holds several options
        nohup java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms128m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
            -Djava.awt.headless=true \
            "$(log_flag log4j)" \
            -Dkafka.logs.dir="$dir" \
            -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" >>"$dir/stdout.log" 2>&1 </dev/null &
        echo $! >"$dir/kafka.pid"
    done
    # All nodes start before any is awaited: a multi-node quorum needs a majority up to elect.
    local deadline=$((SECONDS + timeout)) waiting=("${started[@]}") still
    while ((${#waiting[@]})); do
        still=()
        for i in "${waiting[@]}"; do
            dir="$(node_dir "$i")"
            if ! node_pid "$i" >/dev/null; then
                # Just launched, the child may not have exec'd java yet (its cmdline is still
                # this script's): alive is starting, not failed.
                if kill -0 "$(cat "$dir/kafka.pid" 2>/dev/null || echo none)" 2>/dev/null; then
                    still+=("$i")
                    continue
                fi
                print_tail "$i"
                die "node $i exited during start-up (logs in $dir)"
            fi
            if tail -c "+${offsets[i]}" "$dir/server.log" 2>/dev/null | grep -q 'Kafka Server started' \
                && port_open "$(node_port "$i")"; then
                say "node $i ready on $HOST:$(node_port "$i") (pid $(node_pid "$i"), logs $dir/server.log)"
            else
                still+=("$i")
            fi
        done
        waiting=("${still[@]+"${still[@]}"}")
        ((${#waiting[@]})) || break
        if ((SECONDS >= deadline)); then
            for i in "${waiting[@]}"; do print_tail "$i"; done
            for i in "${started[@]}"; do stop_node "$i" >/dev/null 2>&1 || true; done
            die "node(s) ${waiting[*]} not ready after ${timeout}s; stopped what this start began"
        fi
        sleep 0.2
    done
}

stop_node() {
    local i="$1" pid
    pid="$(node_pid "$i")" || { rm -f "$(node_dir "$i")/kafka.pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    printf '%s\n' "$pid"
}

stop() {
    local i pid pids=() deadline
    # TERM goes to every node at once: stopped one by one, the last ones lose their quorum
    # and wait on it during controlled shutdown.
    for i in "${nodes[@]}"; do
        if pid="$(stop_node "$i")" && [[ -n "$pid" ]]; then pids[i]="$pid"; fi
    done
    deadline=$((SECONDS + 30))
    for i in "${!pids[@]}"; do
        while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "${pids[i]}" 2>/dev/null; then
            say "node $i (pid ${pids[i]}) ignored SIGTERM for 30s; sending SIGKILL"
            kill -KILL "${pids[i]}" 2>/dev/null || true
            while kill -0 "${pids[i]}" 2>/dev/null; do sleep 0.1; done
        fi
        rm -f "$(node_dir "$i")/kafka.pid"
        say "node $i stopped"
    done
}

status() {
    local i pid down=0
    for i in "${nodes[@]}"; do
        if pid="$(node_pid "$i")"; then
            printf 'kafka node %s: running, pid %s, %s:%s, data %s\n' \
                "$i" "$pid" "$HOST" "$(node_port "$i")" "$(node_dir "$i")"
        else
            printf 'kafka node %s: stopped (%s:%s, data %s)\n' \
                "$i" "$HOST" "$(node_port "$i")" "$(node_dir "$i")"
            down=1
        fi
    done
    # LSB convention: 3 = not running.
    return $((down ? 3 : 0))
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    -h | --help | help) usage 0 ;;
    *) die "unknown command '$cmd' (start|stop|status)" ;;
esac
