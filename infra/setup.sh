#!/usr/bin/env bash
# Installs what the local real-services stack needs on a fresh Debian machine (run as root):
#   - Debian's redis-server (apt-get), only if it is missing;
#   - Debian's chromium, prometheus (with promtool) and docker-compose (to validate
#     docker-compose.yml, no Docker engine), for the browser and operations tests;
#   - the jars of a real Apache Kafka broker, resolved from Maven Central by Maven from
#     infra/kafka/pom.xml into ${CAMTOPO_CACHE:-$HOME/.cache/camtopo}/kafka-<version>/libs;
#   - Apicurio Registry (a schema registry with the Confluent REST API), resolved the same way
#     into ${CAMTOPO_CACHE:-$HOME/.cache/camtopo}/apicurio-registry-<version>/ (infra/registry.sh).
# Idempotent and quick when already done (no network then). Python packages are not installed
# here: the Makefile does that. See docs/infra.md.
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${CAMTOPO_CACHE:-$HOME/.cache/camtopo}"
POM="$INFRA_DIR/kafka/pom.xml"
# Pinned so a fresh machine resolves the same plugin as the one tested.
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

log() { printf 'setup: %s\n' "$*" >&2; }
die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}

# The Kafka release: CAMTOPO_KAFKA_VERSION (e.g. 3.9.1), else <kafka.version> in the pom.
kafka_version() {
    local version="${CAMTOPO_KAFKA_VERSION:-}"
    [[ -n "$version" ]] || version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n 1)"
    [[ -n "$version" ]] || die "no <kafka.version> in $POM"
    [[ "$version" =~ ^[34]\.[0-9]+\.[0-9]+$ ]] || die "Kafka version '$version' is not 3.x.y or 4.x.y"
    printf '%s\n' "$version"
}

APT_UPDATED=0
apt_install() {
    [[ "$(id -u)" == 0 ]] || die "need root to apt-get install $* (run: sudo $0)"
    if [[ "$APT_UPDATED" == 0 ]]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    # The package's maintainer scripts would start a system-wide redis on 6379, which would
    # then hold the port `camtopo stack up` wants; a policy-rc.d of 101 forbids that start.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        added_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || { [[ "$added_policy" == 1 ]] && rm -f "$policy"; die "apt-get install $* failed"; }
    if [[ "$added_policy" == 1 ]]; then rm -f "$policy"; fi
}

redis_version() { redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'; }

ensure_redis() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        log "redis-server present: $(redis_version)"
        return
    fi
    apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
    log "installed redis-server $(redis_version)"
}

ensure_java_and_maven() {
    local missing=()
    command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null 2>&1 || missing+=(maven)
    if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

ensure_kafka() {
    local version libs tmp
    version="$(kafka_version)"
    libs="$CACHE_DIR/kafka-$version/libs"
    # The marker is written last, so an interrupted resolve is redone rather than trusted.
    if [[ -f "$libs/.complete" && -f "$libs/kafka_2.13-$version.jar" ]]; then
        log "kafka $version jars present: $libs"
        return
    fi
    ensure_java_and_maven
    mkdir -p "$CACHE_DIR/kafka-$version"
    tmp="$(mktemp -d "$CACHE_DIR/kafka-$version/libs.tmp.XXXXXX")"
    log "resolving kafka_2.13:$version from Maven Central into $libs"
    # The Maven repository lives in the cache too, so one directory holds all of it.
    # The pom's profile kafka3 or kafka4 brings that line's logging binding (reload4j, log4j2).
    if ! mvn -B -q -f "$POM" \
        -Dmaven.repo.local="$CACHE_DIR/m2" \
        -Dkafka.version="$version" -P "kafka${version%%.*}" \
        "$DEPENDENCY_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
        tail -n 40 "$tmp.mvn.log" >&2
        rm -rf "$tmp"
        die "mvn could not resolve the Kafka broker jars (log above; full log: $tmp.mvn.log)"
    fi
    rm -f "$tmp.mvn.log"
    [[ -f "$tmp/kafka_2.13-$version.jar" ]] || die "mvn finished but kafka_2.13-$version.jar is missing"
    # Smoke check: the broker's storage tool loads from these jars.
    java -cp "$tmp/*" kafka.tools.StorageTool random-uuid >/dev/null 2>&1 \
        || die "the resolved jars do not run kafka.tools.StorageTool (java: $(command -v java))"
    rm -rf "$libs"
    mv "$tmp" "$libs"
    touch "$libs/.complete"
    log "kafka $version: $(find "$libs" -name '*.jar' | wc -l) jars, $(du -sh "$libs" | cut -f1)"
}

apicurio_version() {
    local version
    version="$(sed -n 's/^APICURIO_VERSION=\(.*\)$/\1/p' "$INFRA_DIR/registry.sh" | head -n 1)"
    [[ -n "$version" ]] || die "no APICURIO_VERSION= line in $INFRA_DIR/registry.sh"
    printf '%s\n' "$version"
}

# Apicurio Registry's Quarkus app (runner jar + lib/), one tar.gz on Maven Central. The version
# is pinned in infra/registry.sh, the one script that runs it.
ensure_registry() {
    local version home tmp
    version="$(apicurio_version)"
    home="$CACHE_DIR/apicurio-registry-$version"
    if [[ -f "$home/.complete" && -f "$home/apicurio-registry-app-$version-runner.jar" ]]; then
        log "apicurio registry $version present: $home"
        return
    fi
    ensure_java_and_maven
    mkdir -p "$CACHE_DIR"
    tmp="$(mktemp -d "$CACHE_DIR/apicurio-registry-$version.tmp.XXXXXX")"
    log "resolving io.apicurio:apicurio-registry-app:$version (142 MB) from Maven Central"
    if ! mvn -B -q -Dmaven.repo.local="$CACHE_DIR/m2" \
        "$DEPENDENCY_PLUGIN:copy" \
        -Dartifact="io.apicurio:apicurio-registry-app:$version:tar.gz:all" \
        -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
        tail -n 40 "$tmp.mvn.log" >&2
        rm -rf "$tmp"
        die "mvn could not resolve Apicurio Registry $version (log above; full log: $tmp.mvn.log)"
    fi
    rm -f "$tmp.mvn.log"
    tar -xzf "$tmp/apicurio-registry-app-$version-all.tar.gz" -C "$tmp" \
        || die "unpacking apicurio-registry-app-$version-all.tar.gz failed"
    rm -f "$tmp/apicurio-registry-app-$version-all.tar.gz"
    [[ -f "$tmp/apicurio-registry-app-$version-runner.jar" && -d "$tmp/lib" ]] \
        || die "the Apicurio tar.gz did not hold apicurio-registry-app-$version-runner.jar and lib/"
    rm -rf "$home"
    mv "$tmp" "$home"
    # Written last, so an interrupted resolve or unpack is redone rather than trusted.
    touch "$home/.complete"
    log "apicurio registry $version: $(du -sh "$home" | cut -f1) in $home"
}

# Debian's Chromium, for the viewer's end-to-end test (Playwright drives it; no browser download).
ensure_chromium() {
    command -v chromium >/dev/null 2>&1 && return
    apt_install chromium
}

# Debian's Prometheus (and promtool), for the operations test that scrapes the real endpoints
# and evaluates infra/prometheus/alerts.yml. Its maintainer scripts would start a system-wide
# prometheus on :9090; apt_install's policy-rc.d forbids that. With it Debian's docker-compose
# (1.29, Python): `docker-compose config` validates docker-compose.yml against the compose
# schema without a Docker daemon (tests/integration/test_compose.py); no engine is installed.
ensure_prometheus() {
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
        && command -v docker-compose >/dev/null 2>&1 && return
    apt_install prometheus docker-compose
}

ensure_redis
ensure_kafka
ensure_registry
ensure_chromium
ensure_prometheus
dpkg -s gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good python3-gi >/dev/null 2>&1 || apt_install gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good python3-gi  # RTSP test server (infra/rtsp_server.py)
log "done"
