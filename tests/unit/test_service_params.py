"""The query service's parameter checks, without Redis: what a client may send as a number,
a change-log id or a window, and that the OpenAPI document promises the 400 for them."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import make_mocked_request

from camtopo.core.grid import Grid, Network, NetworkError
from topology_store.openapi import openapi_document
from topology_store.service import (
    LAST_STREAM_ID,
    BadParameter,
    StreamId,
    parse_digits,
    parse_stream_id,
    query_int,
    resolve_window,
    window_param,
)

U64 = 2**64 - 1
# Characters str.isdigit() accepts that are not 0-9: superscript two (int() refuses it),
# Arabic-Indic one and fullwidth one (int() reads both as 1).
UNICODE_DIGITS = ["²", "١", "１"]


@pytest.mark.parametrize(
    "raw", [*UNICODE_DIGITS, "", "-1", "+1", " 1", "1 ", "1_000", "1e3", "0x1", "1234567890"]
)
def test_only_a_few_ascii_digits_are_a_number(raw: str) -> None:
    with pytest.raises(BadParameter) as exc:
        parse_digits("n", raw)
    assert exc.value.name == "n" and "'n'" in str(exc.value)


def test_a_long_value_is_refused_before_int_and_not_echoed_whole() -> None:
    with pytest.raises(BadParameter) as exc:
        parse_digits("n", "9" * 5000)  # int() would refuse it (> 4300 digits): a 500
    assert len(str(exc.value)) < 200


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("007", 7), ("123456789", 123456789)])
def test_ascii_digits_are_read(raw: str, value: int) -> None:
    assert parse_digits("n", raw) == value


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", StreamId(0, 0)),
        ("0-0", StreamId(0, 0)),
        ("1700000000000-3", StreamId(1700000000000, 3)),
        (f"{U64}-{U64}", LAST_STREAM_ID),
    ],
)
def test_stream_ids_as_redis_takes_them(raw: str, expected: StreamId) -> None:
    assert parse_stream_id("after", raw) == expected
    assert str(expected) == f"{expected.ms}-{expected.seq}"


@pytest.mark.parametrize(
    "raw",
    ["abc", "-", "+", "$", "1-", "-1", "1-2-3", "1 -2", "1-2\n", str(U64 + 1), f"0-{U64 + 1}",
     "9" * 21, *UNICODE_DIGITS, "1-²"],
)  # fmt: skip
def test_anything_else_is_not_a_stream_id(raw: str) -> None:
    with pytest.raises(BadParameter) as exc:
        parse_stream_id("after", raw)
    assert exc.value.name == "after"


def test_query_int_defaults_and_range() -> None:
    def limit(query: str) -> int:
        return query_int(make_mocked_request("GET", f"/x{query}"), "limit", 100, 1, 1000)

    assert limit("") == 100 and limit("?limit=1000") == 1000
    for bad in ("?limit=0", "?limit=1001", "?limit=-5", "?limit=%C2%B2", "?limit="):
        with pytest.raises(BadParameter):
            limit(bad)


NETWORK = Network(("cam0", "a:b", "cam2"), (Grid(4, 3), Grid(2, 2), Grid(4, 3)))


def window(raw: str) -> int:
    request = make_mocked_request("GET", "/api/evidence?" + urlencode({"a": raw}))
    return resolve_window(NETWORK, "a", window_param(request, "a"))


def test_windows_by_label_or_global_index() -> None:
    assert window("cam0:11") == 11 and window("a:b:3") == 15 and window("27") == 27
    # A well-formed camera the network lacks is a 404 (NetworkError), like the camera routes.
    with pytest.raises(NetworkError):
        window("cam9:1")


@pytest.mark.parametrize(
    "raw", ["cam0:12", "28", "cam0:", ":1", "cam0:-1", "cam0:²", "²", "cam0:١", "x" * 201 + ":1"]
)
def test_malformed_or_out_of_range_windows_are_bad_parameters(raw: str) -> None:
    with pytest.raises(BadParameter):
        window(raw)


def test_a_missing_window_is_a_bad_parameter() -> None:
    with pytest.raises(BadParameter, match="required"):
        window_param(make_mocked_request("GET", "/api/evidence"), "a")


def test_openapi_promises_the_400_wherever_there_are_parameters() -> None:
    paths = openapi_document(token_required=False)["paths"]
    ops = {(p, m): op for p, methods in paths.items() for m, op in methods.items()}
    with_params = {key for key, op in ops.items() if "parameters" in op}
    assert {p for p, _ in with_params} >= {"/api/changes", "/api/evidence", "/api/stream"}
    for key in with_params:
        assert "400" in ops[key]["responses"], key
