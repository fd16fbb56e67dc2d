"""Kafka users and least-privilege ACLs, one principal per role (docs/security.md, "Kafka").

A broker with an authorizer and ``allow.everyone.if.no.acl.found=false`` (infra/kafka.sh's
secured mode) refuses everything no ACL allows. :func:`grant_roles` gives each camtopo role the
rights its clients use and nothing more; :func:`create_users` makes (or re-keys) SCRAM users.
Both run as the super user, with the admin settings (``CAMTOPO_KAFKA_USERNAME=admin``, ...).

Per role (the table with examples is in docs/security.md): the producer writes ``occupancy``;
the single worker reads ``occupancy`` in its group and writes dead letters and topology
changes; an assembler reads ``occupancy`` in its groups and writes the ranges topic (and reads
it back, where to resume) and dead letters; a counter reads the ranges and count-shards topics
in its groups and writes topology changes; a reader reads topology changes in groups named
``<reader group prefix>*``; the lag exporter describes every group and topic. Faust apps (the
single worker, assemblers) also own the topics ``<group>-*`` they declare themselves.

Every writer gets IdempotentWrite on the cluster (librdkafka's idempotent producers; Kafka 3+
only needs WRITE on the topic, older brokers need it). The partitioned roles also get DESCRIBE
on the pipeline topics they do not use: at start ``ensure_topics`` checks every topic's
partition count (describe shows the count, never a record).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from camtopo.connections import kafka_config
from camtopo.settings import Settings

log = logging.getLogger(__name__)

ROLES = ("producer", "single", "assembler", "counter", "reader", "lag-exporter")
DEFAULT_READER_GROUP_PREFIX = "topology-reader"
SCRAM_ITERATIONS = 8192

_Right = tuple[ResourceType, str, ResourcePatternType, AclOperation]
_LIT, _PRE = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
_TOPIC, _GROUP, _CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER
_READ, _WRITE, _DESCRIBE, _CREATE = (
    AclOperation.READ,
    AclOperation.WRITE,
    AclOperation.DESCRIBE,
    AclOperation.CREATE,
)
_IDEMPOTENT = (_CLUSTER, "kafka-cluster", _LIT, AclOperation.IDEMPOTENT_WRITE)


def _faust_internal(group: str) -> list[_Right]:
    # A Faust app declares its own topics (the assignor's leader topic, changelogs) as
    # "<app id>-...", and reads and writes them.
    return [(_TOPIC, f"{group}-", _PRE, op) for op in (_CREATE, _DESCRIBE, _READ, _WRITE)]


def _describe(topics: Iterable[str]) -> list[_Right]:
    return [(_TOPIC, t, _LIT, _DESCRIBE) for t in topics]


def role_rights(
    settings: Settings, role: str, reader_group_prefix: str = DEFAULT_READER_GROUP_PREFIX
) -> list[_Right]:
    """What ``role`` may do, with the topic and group names of ``settings``."""
    s = settings
    occupancy, dead, changes = (
        s.kafka.occupancy_topic,
        s.kafka.dead_letter_topic,
        s.kafka.topology_changes_topic,
    )
    ranges, shards = s.partitioned.ranges_topic, s.partitioned.counter_shards_topic
    if role == "producer":
        return [(_TOPIC, occupancy, _LIT, _WRITE), _IDEMPOTENT]
    if role == "single":
        return [
            (_TOPIC, occupancy, _LIT, _READ),
            (_GROUP, s.processor.group, _LIT, _READ),
            (_TOPIC, dead, _LIT, _WRITE),
            (_TOPIC, changes, _LIT, _WRITE),
            *_faust_internal(s.processor.group),
            _IDEMPOTENT,
        ]
    if role == "assembler":
        return [
            (_TOPIC, occupancy, _LIT, _READ),
            # its group and "<group>-resume" (processors/topics.read_published)
            (_GROUP, s.partitioned.assembler_group, _PRE, _READ),
            (_TOPIC, ranges, _LIT, _WRITE),
            (_TOPIC, ranges, _LIT, _READ),
            (_TOPIC, dead, _LIT, _WRITE),
            *_describe([changes, shards]),
            *_faust_internal(s.partitioned.assembler_group),
            _IDEMPOTENT,
        ]
    if role == "counter":
        return [
            (_TOPIC, ranges, _LIT, _READ),
            (_TOPIC, shards, _LIT, _READ),
            # its lease group and each worker's "<group>-reader-<id>"
            (_GROUP, s.partitioned.counter_group, _PRE, _READ),
            (_TOPIC, changes, _LIT, _WRITE),
            *_describe([occupancy, dead]),
            _IDEMPOTENT,
        ]
    if role == "reader":
        return [(_TOPIC, changes, _LIT, _READ), (_GROUP, reader_group_prefix, _PRE, _READ)]
    if role == "lag-exporter":
        return [(_GROUP, "*", _LIT, _DESCRIBE), (_TOPIC, "*", _LIT, _DESCRIBE)]
    raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")


def role_bindings(
    settings: Settings,
    users: Mapping[str, str],
    reader_group_prefix: str = DEFAULT_READER_GROUP_PREFIX,
) -> list[AclBinding]:
    """The ALLOW bindings giving each ``users`` principal (role -> user name) its role's rights."""
    return [
        AclBinding(rtype, name, pattern, f"User:{user}", "*", op, AclPermissionType.ALLOW)
        for role, user in users.items()
        for rtype, name, pattern, op in role_rights(settings, role, reader_group_prefix)
    ]


def _admin(admin_settings: Settings) -> AdminClient:
    return AdminClient(kafka_config(admin_settings, "admin", log_level=0))


def grant_roles(
    admin_settings: Settings,
    users: Mapping[str, str],
    reader_group_prefix: str = DEFAULT_READER_GROUP_PREFIX,
    timeout: float = 30.0,
) -> list[AclBinding]:
    """Create the ACLs of ``users`` (role -> Kafka user name) as the super user; topic and group
    names come from ``admin_settings``. Creating an ACL that exists is a no-op."""
    bindings = role_bindings(admin_settings, users, reader_group_prefix)
    admin = _admin(admin_settings)  # kept alive until every answer is in
    futures = admin.create_acls(bindings, request_timeout=timeout)
    for future in futures.values():
        future.result(timeout)
    log.info(
        "granted %d ACLs to %s", len(bindings), ", ".join(f"{r}={u}" for r, u in users.items())
    )
    return bindings


def create_users(
    admin_settings: Settings, passwords: Mapping[str, str], timeout: float = 30.0
) -> None:
    """Create or re-key SCRAM-SHA-512 users (name -> password) as the super user. A second
    credential cannot coexist with the first for one mechanism: re-keying replaces it."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    changes: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(name, info, password.encode())
        for name, password in passwords.items()
    ]
    admin = _admin(admin_settings)  # kept alive until every answer is in
    futures = admin.alter_user_scram_credentials(changes, request_timeout=timeout)
    for future in futures.values():
        future.result(timeout)
    log.info("SCRAM-SHA-512 credentials set for %s", ", ".join(passwords))
