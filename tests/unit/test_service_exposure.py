"""The query service's exposure rule, stream tokens and secret handling, without a server."""

from __future__ import annotations

import logging
import time

import pytest
from pydantic import SecretStr, ValidationError

from camtopo.settings import Settings
from topology_store.service import (
    ExposedWithoutToken,
    check_exposure,
    is_loopback,
    make_stream_token,
    stream_key,
    stream_token_valid,
)

TOKEN = "unit-token-0123456789abcdef"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "192.168.1.2", "camtopo.lan"])
def test_exposed_hosts_need_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ExposedWithoutToken, match="CAMTOPO_API_TOKEN"):
        check_exposure(Settings(), host)
    check_exposure(Settings(service={"api_token": SecretStr(TOKEN)}), host)  # a token: allowed


def test_auth_off_allows_exposure_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_exposure(Settings(service={"api_auth": "off"}), "0.0.0.0")  # type: ignore[arg-type]
    assert any("WITHOUT a token" in r.getMessage() for r in caplog.records)


def test_the_token_never_shows_in_repr_dumps_or_errors() -> None:
    settings = Settings(service={"api_token": TOKEN})  # type: ignore[arg-type]
    assert TOKEN not in repr(settings) and TOKEN not in str(settings)
    assert TOKEN not in settings.model_dump_json()
    with pytest.raises(ValidationError) as refused:
        Settings(service={"api_token": "short-secret-1"})  # type: ignore[arg-type]
    assert "short-secret-1" not in str(refused.value)


def test_stream_tokens_expire_and_cannot_be_forged() -> None:
    key = stream_key(SecretStr(TOKEN))
    now = time.time()
    good = make_stream_token(key, int(now) + 300)
    assert stream_token_valid(key, good, now)
    assert not stream_token_valid(key, good, now + 301)  # expired
    assert not stream_token_valid(stream_key(SecretStr(TOKEN + "x")), good, now)  # rotated
    expires, _, mac = good.partition(".")
    assert not stream_token_valid(key, f"{int(expires) + 3600}.{mac}", now)  # extended
    for bad in ("", ".", "x.y", f"{expires}.", f"{expires}.{mac[:-1]}", "\udcff." + mac):
        assert not stream_token_valid(key, bad, now), bad
