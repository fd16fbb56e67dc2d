"""The Kafka security settings reach every client from camtopo/connections.py (no broker)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import SecretStr

from camtopo.connections import KafkaSecuritySettingsError, faust_broker, kafka_config
from camtopo.settings import Settings

PASSWORD = "s3cret-kafka-password"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.crt", "-days", "1", "-subj", "/CN=test CA"],
        cwd=folder, check=True, capture_output=True,
    )  # fmt: skip
    return str(Path(folder) / "ca.crt")


def _sasl(**more: object) -> Settings:
    return Settings(
        kafka={
            "security_protocol": "SASL_SSL",
            "username": "producer",
            "password": SecretStr(PASSWORD),
            **more,
        }
    )


def test_plaintext_is_unchanged() -> None:
    assert kafka_config(Settings(), "producer") == {
        "bootstrap.servers": "127.0.0.1:9092",
        "client.id": "camtopo-producer",
    }
    assert faust_broker(Settings()) == {"broker": "kafka://127.0.0.1:9092"}


def test_sasl_ssl_reaches_librdkafka_and_faust(ca_file: str) -> None:
    settings = _sasl(ca_file=ca_file)
    conf = kafka_config(settings, "counter", **{"group.id": "g"})
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "producer" and conf["sasl.password"] == PASSWORD
    assert conf["ssl.ca.location"] == ca_file and conf["group.id"] == "g"
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    creds = faust_broker(settings)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol is AuthProtocol.SASL_SSL
    assert creds.mechanism is SASLMechanism.SCRAM_SHA_512
    assert creds.ssl_context is not None
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED and creds.ssl_context.check_hostname
    # The password is in no repr
    assert PASSWORD not in repr(settings) and PASSWORD not in repr(creds)


def test_incomplete_settings_are_refused_naming_the_setting_not_the_value() -> None:
    for settings, missing in (
        (Settings(kafka={"security_protocol": "SASL_SSL", "username": "u"}), "KAFKA_PASSWORD"),
        (_sasl(cert_file="c.pem"), "KAFKA_KEY_FILE"),
        (Settings(kafka={"security_protocol": "SSL"}), "KAFKA_CERT_FILE"),
    ):
        for build in (lambda s: kafka_config(s, "admin"), faust_broker):
            with pytest.raises(KafkaSecuritySettingsError) as err:
                build(settings)
            assert missing in str(err.value) and PASSWORD not in str(err.value)


def test_an_unknown_protocol_is_refused_without_echoing_it(monkeypatch) -> None:
    monkeypatch.setenv("CAMTOPO_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT-hunter2")
    with pytest.raises(ValueError) as err:
        Settings()
    assert "hunter2" not in str(err.value)
