"""The cassettes' ``json_body`` matcher: JSON bodies match as data, anything else as bytes.

vcrpy calls it for every request against every unplayed interaction, so it
compares raw bytes first and parses each body once (bench row 4); these tests
pin what it answers.
"""

from __future__ import annotations

import pytest
from vcr.request import Request  # type: ignore[import-untyped]

from pytest_engagelab.cassettes import json_body

URL = "https://otp.api.engagelab.cc/v1/messages"


def request(body: bytes | str | None) -> Request:
    return Request("POST", URL, body, {"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (
            b'{"to": "+6591000001", "template": {"id": "login"}}',
            b'{"to": "+6591000001", "template": {"id": "login"}}',
        ),
        (
            b'{"to":"+6591000001","template":{"id":"login"}}',
            b'{"template": {"id": "login"}, "to": "+6591000001"}',
        ),
        (b"[1, 2]", "[1,2]"),
        (b"not json", b"not json"),
        (None, b""),
    ],
)
def test_the_same_data_matches(one: bytes | str | None, other: bytes | str | None) -> None:
    for _ in range(2):  # the second time from the cache
        json_body(request(one), request(other))
        json_body(request(other), request(one))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (b'{"to": "+6591000001"}', b'{"to": "+6591000002"}'),
        (b"[1, 2]", b"[2, 1]"),
        (b"not json", b"not json either"),
        (b'{"to": "+6591000001"}', b"not json"),
    ],
)
def test_different_data_raises_naming_both_bodies(one: bytes, other: bytes) -> None:
    for _ in range(2):
        with pytest.raises(AssertionError) as raised:
            json_body(request(one), request(other))
        assert str(raised.value) == f"{one.decode()} != {other.decode()}"


def test_a_parsed_body_is_not_changed_by_comparing_it() -> None:
    recorded = request(b'{"to": "+6591000001", "params": {"a": 1}}')
    json_body(recorded, request(b'{"params": {"a": 1}, "to": "+6591000001"}'))
    with pytest.raises(AssertionError):
        json_body(recorded, request(b'{"params": {"a": 2}, "to": "+6591000001"}'))
    json_body(recorded, request(b'{"params":{"a":1},"to":"+6591000001"}'))
