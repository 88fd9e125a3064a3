"""Fuzzing the cassette loader: whatever is in the file, loading it either works or fails
with one ``CassetteError`` naming the file -- never another exception, never a traceback
from yaml or vcrpy.

Inputs: arbitrary text and bytes, arbitrary JSON and YAML documents, and valid
cassettes with parts replaced by arbitrary values (the likeliest damage: a
hand edit, a merge conflict, a truncated write).  Both doors are checked:
:func:`read_cassette` and the vcrpy persister the plugin replays through.

A fast profile runs by default; the deep one (``-m deep``) runs 10,000
examples per input kind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vcr.serializers import yamlserializer  # type: ignore[import-untyped]

from pytest_engagelab.cassettes import AtomicPersister, CassetteError, read_cassette

FAST, DEEP = 150, 10_000

# -- inputs ----------------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)

VALID_INTERACTION: dict[str, Any] = {
    "request": {
        "body": '{"to":"+6591234567","template":{"id":"login"}}',
        "headers": {"Content-Type": ["application/json"]},
        "method": "POST",
        "uri": "https://otp.api.engagelab.cc/v1/messages",
    },
    "response": {
        "status": {"code": 200, "message": "OK"},
        "headers": {"Content-Type": ["application/json"]},
        "body": {"string": '{"message_id":"1","send_channel":"sms"}'},
    },
}


def valid_cassette(count: int = 2) -> dict[str, Any]:
    return {"version": 1, "interactions": [json.loads(json.dumps(VALID_INTERACTION))] * count}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def damaged_cassettes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid cassette with one to three of its parts replaced or deleted."""
    cassette = json.loads(json.dumps(valid_cassette()))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(cassette) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = cassette
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return cassette


def as_yaml(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True)


def as_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


INPUTS: dict[str, st.SearchStrategy[str | bytes]] = {
    "text": st.text(max_size=300),
    "bytes": st.binary(max_size=300),
    "yaml-ish text": st.lists(
        st.sampled_from(
            [
                "version: 1\n",
                "interactions:\n",
                "- request:\n",
                "  response: {}\n",
                "  - ",
                "[",
                "]",
                "{",
                "}",
                ": ",
                "&a ",
                "*a ",
                "!!python/object ",
                "'",
                '"',
                "\t",
                "---\n",
                "...\n",
                "\x00",
            ]
        )
        | st.text(max_size=8),
        max_size=30,
    ).map("".join),
    "json document": json_values.map(as_json),
    "yaml document": json_values.map(as_yaml),
    "damaged cassette (yaml)": damaged_cassettes().map(as_yaml),
    "damaged cassette (json)": damaged_cassettes().map(as_json),
}


# -- the property ------------------------------------------------------------------------


def assert_names_the_file(error: CassetteError, file: Path) -> None:
    message = str(error)
    assert message.startswith(f"pytest-engagelab: cassette {file}: "), message
    assert "\n" not in message, message
    assert error.problem.strip(), message
    assert error.path == file


def load_both_ways(file: Path, content: str | bytes) -> None:
    """Write ``content`` to ``file`` and load it through both loaders."""
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content, encoding="utf-8")
    try:
        data = read_cassette(file)
    except CassetteError as error:
        assert_names_the_file(error, file)
    else:
        assert data["version"] == 1
        assert isinstance(data["interactions"], list)
    try:
        requests, responses = AtomicPersister().load_cassette(str(file), yamlserializer)
    except CassetteError as error:
        assert_names_the_file(error, file)
    else:
        assert len(requests) == len(responses)


def fuzz(
    examples: int, strategy: st.SearchStrategy[str | bytes], check: Callable[..., None]
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def run(content: str | bytes) -> None:
        check(content)

    run()


@pytest.mark.parametrize("kind", list(INPUTS))
def test_every_file_loads_or_fails_naming_itself(kind: str, tmp_path: Path) -> None:
    file = tmp_path / "cassettes" / "fuzzed.yaml"
    file.parent.mkdir()
    fuzz(FAST, INPUTS[kind], lambda content: load_both_ways(file, content))


@pytest.mark.deep
@pytest.mark.parametrize("kind", list(INPUTS))
def test_every_file_loads_or_fails_naming_itself_deep(kind: str, tmp_path: Path) -> None:
    file = tmp_path / "cassettes" / "fuzzed.yaml"
    file.parent.mkdir()
    fuzz(DEEP, INPUTS[kind], lambda content: load_both_ways(file, content))


def _with_request_headers(headers: Any) -> dict[str, Any]:
    cassette = valid_cassette()
    cassette["interactions"][1] = json.loads(json.dumps(VALID_INTERACTION))
    cassette["interactions"][1]["request"]["headers"] = headers
    return cassette


@pytest.mark.parametrize(
    "cassette",
    [
        pytest.param(_with_request_headers({"Content-Type": []}), id="header with no value"),
        pytest.param(_with_request_headers([""]), id="headers a list of strings"),
        pytest.param(_with_request_headers("Content-Type"), id="headers a string"),
    ],
)
def test_damage_the_fuzzer_found_is_reported_naming_the_file(
    cassette: dict[str, Any], tmp_path: Path
) -> None:
    """Cases found by the fuzzer, kept so that the fast profile always tries them."""
    load_both_ways(tmp_path / "found.yaml", as_yaml(cassette))


def test_a_valid_cassette_loads(tmp_path: Path) -> None:
    """The fuzzer's starting point is itself a cassette both loaders accept."""
    file = tmp_path / "valid.yaml"
    for text in (as_yaml(valid_cassette()), as_json(valid_cassette())):
        file.write_text(text, encoding="utf-8")
        assert len(read_cassette(file)["interactions"]) == 2
        requests, responses = AtomicPersister().load_cassette(str(file), yamlserializer)
        assert [r.uri for r in requests] == [VALID_INTERACTION["request"]["uri"]] * 2
        assert [r["status"]["code"] for r in responses] == [200, 200]
