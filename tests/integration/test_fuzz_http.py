"""Fuzzing of the query service over HTTP: the real app on loopback over a REAL Redis store,
random paths, query parameters, methods and headers (tests/fuzzing.py). Never a 5xx, and every
error is JSON naming what was wrong."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from tests import fuzzing as f

pytestmark = pytest.mark.redis


def test_fuzz_http_paths_and_parameters(redis_server) -> None:
    with f.serving(redis_server.url) as target:

        @settings(f.FUZZ)
        @given(target.strategy)
        def fuzz(request: f.HttpRequest) -> None:
            target.check(request)

        fuzz()
