"""The cassettes' ``json_body`` matcher: JSON bodies match as data, anything else as bytes.

The cassette finds answers by :func:`request_key` (one key per interaction), which
must agree with the matchers exactly; the matcher itself explains a miss.  These tests
pin what both answer, and that replay compares no pair of requests.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vcr.matchers import get_matchers_results, method  # type: ignore[import-untyped]
from vcr.matchers import path as vcr_path
from vcr.request import Request  # type: ignore[import-untyped]

from pytest_engagelab.cassettes import json_body
from pytest_engagelab.cassettes.matching import body_key, request_key

pytest_plugins = ["pytester"]

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


# -- JSON types, and the key the cassette files interactions under ---------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (b'{"flag": true}', b'{"flag": 1}'),
        (b'{"flag": false}', b'{"flag": 0}'),
        (b"[true]", b"[1]"),
        (b'{"n": null}', b'{"n": 0}'),
        (b'{"n": "1"}', b'{"n": 1}'),
    ],
)
def test_json_types_are_kept_apart(one: bytes, other: bytes) -> None:
    with pytest.raises(AssertionError) as raised:
        json_body(request(one), request(other))
    assert str(raised.value) == f"{one.decode()} != {other.decode()}"
    assert body_key(one) != body_key(other)


def test_the_same_number_matches_however_written() -> None:
    json_body(request(b'{"n": 1}'), request(b'{"n": 1.0}'))
    assert body_key(b'{"n": 1}') == body_key(b'{"n": 1.0}')


def test_a_body_nested_too_deep_for_json_is_compared_as_bytes() -> None:
    deep = b"[" * 100_000
    assert body_key(deep) == ("bytes", deep)
    json_body(request(deep), request(deep))


scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, 1.0, 2.5])
json_values = st.recursive(
    scalars | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=8,
)
bodies = json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=6) | st.none()


@given(one=bodies, other=bodies, path=st.sampled_from(["/v1/messages", "/v1/codes", ""]))
def test_equal_keys_exactly_when_every_matcher_passes(
    one: bytes | None, other: bytes | None, path: str
) -> None:
    """The index is only correct if ``request_key`` agrees with vcrpy's three matchers."""
    first = Request("POST", URL, one, {})
    second = Request("POST", "https://otp.api.engagelab.cc" + path, other, {})
    _passed, failed = get_matchers_results(first, second, [method, vcr_path, json_body])
    assert (request_key(first) == request_key(second)) == (not failed)


# -- linear replay --------------------------------------------------------------------------

REPLAY_ALL = """
import os, httpx, pytest

@pytest.mark.engagelab_cassette("many")
def test_replay(engagelab_cassette):
    c = engagelab_cassette.credentials
    with httpx.Client(auth=(c.dev_key, c.dev_secret)) as client:
        for i in range(int(os.environ["N"])):
            body = {"to": f"+6590{i:07d}", "template": {"id": "login"}}
            assert client.post(c.base_url + "/v1/messages", json=body).status_code == 200
"""

COUNTING = """
import pytest
from pytest_engagelab.cassettes import matching, recorder

CALLS = {"json_body": 0, "request_key": 0}


def _counted(name, function):
    def counted(*args):
        CALLS[name] += 1
        return function(*args)
    return counted


recorder.json_body = _counted("json_body", matching.json_body)
recorder.request_key = _counted("request_key", matching.request_key)


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"CALLS {CALLS['json_body']} {CALLS['request_key']}")
"""


def _cassette_of(count: int) -> str:
    from pytest_engagelab.cassettes.files import dump_yaml

    interactions = [
        {
            "request": {
                "method": "POST",
                "uri": "https://otp.api.engagelab.cc/v1/messages",
                "body": json.dumps({"to": f"+6590{i:07d}", "template": {"id": "login"}}),
                "headers": {"content-type": ["application/json"]},
            },
            "response": {
                "status": {"code": 200, "message": "OK"},
                "headers": {"content-type": ["application/json"]},
                "body": {"string": json.dumps({"message_id": str(i), "send_channel": "sms"})},
            },
        }
        for i in range(count)
    ]
    return dump_yaml({"version": 1, "interactions": interactions})


@pytest.mark.parametrize("count", [100, 2000])
def test_replay_files_each_interaction_once_and_compares_no_pair(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    """vcrpy compared each request with every recorded interaction through every matcher
    (count^2 / 2 json_body calls); the index computes one key per interaction and per
    request, and calls no matcher unless a request misses."""
    given = os.environ.get("PYTEST_ADDOPTS", "")  # the suite's own inner-run options stay
    monkeypatch.setenv("PYTEST_ADDOPTS", f"{given} -p no:hypothesispytest -p no:cacheprovider")
    monkeypatch.setenv("N", str(count))
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(COUNTING)
    pytester.makepyfile(test_many=REPLAY_ALL)
    (pytester.path / "cassettes").mkdir()
    (pytester.path / "cassettes" / "many.yaml").write_text(_cassette_of(count))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"CALLS 0 {2 * count}"])
