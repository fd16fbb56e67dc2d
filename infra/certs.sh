#!/usr/bin/env bash
# A private CA and server certificates it signed, for the secured modes (docs/security.md):
#
#   infra/certs.sh DIR NAME...
#
# writes DIR/ca.crt and DIR/ca.key (once: an existing CA is kept, so running it again issues
# new server certificates from the same CA, which is how they are rotated) and, per NAME,
# DIR/NAME.crt, DIR/NAME.key (PKCS#8, openssl 3's default) and DIR/NAME-keystore.pem (key and
# chain in one file: Kafka's PEM keystore). Each certificate is valid for the host names NAME
# and localhost and the address 127.0.0.1, for CAMTOPO_CERT_DAYS days (default 825). Private
# keys are mode 600; DIR is made mode 700.
set -euo pipefail

die() {
    printf 'certs.sh: error: %s\n' "$*" >&2
    exit 1
}

(($# >= 2)) || die "usage: infra/certs.sh DIR NAME..."
command -v openssl >/dev/null 2>&1 || die "openssl not found"
dir="$1"
shift
days="${CAMTOPO_CERT_DAYS:-825}"
[[ "$days" =~ ^[0-9]+$ ]] || die "CAMTOPO_CERT_DAYS must be whole days, got '$days'"
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077
ossl() { openssl "$@" 2>/dev/null || die "openssl $1 failed"; }

if [[ ! -s ca.key || ! -s ca.crt ]]; then
    ossl req -x509 -newkey rsa:3072 -nodes -keyout ca.key -out ca.crt -days "$days" \
        -subj "/CN=camtopo private CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
fi
for name in "$@"; do
    [[ "$name" =~ ^[A-Za-z0-9.-]+$ ]] || die "'$name' is not a host name"
    ossl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$name"
    printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
        "$name" >"$name.ext"
    ossl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" \
        -days "$days" -extfile "$name.ext"
    cat "$name.key" "$name.crt" >"$name-keystore.pem"
    rm -f "$name.csr" "$name.ext"
done
# Certificates are public; keys stay 600.
chmod 644 ca.crt "${@/%/.crt}"
