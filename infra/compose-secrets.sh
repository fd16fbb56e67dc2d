#!/usr/bin/env bash
# Secrets of the secured compose stack (docker-compose.secured.yml, docs/security.md "Compose"):
#
#   infra/compose-secrets.sh [DIR]      # DIR default ./.secrets (CAMTOPO_SECRETS_DIR)
#
# Makes, in DIR (mode 700), whatever is missing (existing files are kept: delete one and run
# again to replace it, docs/security.md "Rotation"):
#   ca.crt ca.key, kafka.* redis.*  a private CA and the brokers' certificates (infra/certs.sh)
#   kafka-ROLE.pw                   a SCRAM password per Kafka role (processors/acls.py)
#   kafka-scram-ROLE.properties     the same for kafka-configs --add-config-file (kafka-init)
#   redis.pw, redis-users.acl       the Redis user's password and the server's ACL file (the
#                                   password only as its SHA-256; the rule of infra/redis.sh)
#   grafana-admin.pw, compose.env   Grafana's admin password; CAMTOPO_API_TOKEN for compose
#   SERVICE.env                     each camtopo service's credentials (env_file)
# Passwords are 48 hex characters (openssl rand). Files are mode 644 so that the containers'
# users (kafka 1000, redis 999, camtopo 10001) can read the bind-mounted copies; DIR itself is
# 700, so other users of the host cannot reach them. Never commit DIR (.gitignore has .secrets/).
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:-${CAMTOPO_SECRETS_DIR:-.secrets}}"
ROLES=(producer single assembler counter lag-exporter)
REDIS_USER=camtopo
REDIS_KEYS='camtopo:*'

command -v openssl >/dev/null 2>&1 || { echo "compose-secrets.sh: openssl not found" >&2; exit 1; }
mkdir -p "$dir"
chmod 700 "$dir"
[[ -s "$dir/kafka.crt" && -s "$dir/redis.crt" ]] || "$INFRA_DIR/certs.sh" "$dir" kafka redis
umask 022

password() { # FILE: a new random password, unless FILE has one
    [[ -s "$1" ]] || openssl rand -hex 24 >"$1"
}
value() { tr -d '\n' <"$1"; }

for role in "${ROLES[@]}"; do
    password "$dir/kafka-$role.pw"
    printf 'SCRAM-SHA-512=[iterations=8192,password=%s]\n' "$(value "$dir/kafka-$role.pw")" \
        >"$dir/kafka-scram-$role.properties"
done
password "$dir/redis.pw"
password "$dir/grafana-admin.pw"
[[ -s "$dir/api-token" ]] || openssl rand -hex 32 >"$dir/api-token"
printf 'CAMTOPO_API_TOKEN=%s\n' "$(value "$dir/api-token")" >"$dir/compose.env"

hash="$(value "$dir/redis.pw" | sha256sum | cut -d' ' -f1)"
{
    printf 'user default off\n'
    printf 'user %s on #%s ~%s &* -@all +@read +@write +@transaction +@connection -@dangerous +info\n' \
        "$REDIS_USER" "$hash" "$REDIS_KEYS"
} >"$dir/redis-users.acl"

# service -> the Kafka role it logs in as ("-": none); Redis users get the Redis password.
env_file() { # SERVICE ROLE REDIS(yes|no)
    {
        if [[ "$2" != - ]]; then
            printf 'CAMTOPO_KAFKA_USERNAME=%s\n' "$2"
            printf 'CAMTOPO_KAFKA_PASSWORD=%s\n' "$(value "$dir/kafka-$2.pw")"
        fi
        if [[ "$3" == yes ]]; then
            printf 'CAMTOPO_REDIS_USERNAME=%s\n' "$REDIS_USER"
            printf 'CAMTOPO_REDIS_PASSWORD=%s\n' "$(value "$dir/redis.pw")"
        fi
    } >"$dir/$1.env"
}
env_file producers producer no
env_file processor single yes
env_file assembler assembler yes
env_file counter counter yes
env_file lag-exporter lag-exporter no
env_file query - yes
chmod 644 "$dir"/*.pw "$dir"/*.env "$dir"/*.properties "$dir"/redis-users.acl "$dir"/api-token \
    "$dir"/kafka-keystore.pem "$dir"/kafka.key "$dir"/redis.key
chmod 600 "$dir/ca.key" # only infra/certs.sh needs the CA's key (new certificates)
echo "compose-secrets.sh: secrets in $dir; start with:"
echo "  docker compose --env-file $dir/compose.env -f docker-compose.yml -f docker-compose.secured.yml up --build"
