"""Cassettes as users meet them: record against a real HTTP server on loopback (an
``OTPServer`` that ``ENGAGELAB_BASE_URL`` points to), then replay with that server stopped.

Every run is a pytester run of a scratch project; the assertions are on outcomes,
on the lines users read and on the cassette files written.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml

from pytest_engagelab import Emulator
from pytest_engagelab.cassettes import (
    Scrubber,
    cassette_file_name,
    check_drift,
    read_cassette,
    redact_recipients,
)
from pytest_engagelab.doors.server import OTPServer

pytest_plugins = ["pytester"]

KEY = "live-key-7f3a9c41"
SECRET = "live-secret-Zq8w2e-Kx"
EXTRA = "extra-token-Hh5j2LQ"
FORBIDDEN = (
    KEY,
    SECRET,
    f"{KEY}:{SECRET}",
    base64.b64encode(f"{KEY}:{SECRET}".encode()).decode(),
    EXTRA,
)

SEND_AND_VERIFY = """
import pytest

@pytest.mark.engagelab_cassette
def test_send_and_verify(otp_client):
    sent = otp_client.send("+6591234567", "login", language="en")
    assert sent.send_channel == "sms"
    assert otp_client.verify(sent.message_id, "000000").verified is False
"""


@pytest.fixture(autouse=True)
def _quick_inner_runs(cassette_inner_runs: None) -> None:
    """Every test here runs pytest inside: see ``cassette_inner_runs`` in conftest."""


@pytest.fixture
def server(
    monkeypatch: pytest.MonkeyPatch, recording_with: Callable[[str, str], None]
) -> Iterator[OTPServer]:
    """The "real endpoint": an OTPServer with the recording credentials, pointed to by env."""
    recording_with(KEY, SECRET)
    with OTPServer(Emulator(dev_key=KEY, dev_secret=SECRET, rate_limit=False)) as live:
        monkeypatch.setenv("ENGAGELAB_DEV_KEY", KEY)
        monkeypatch.setenv("ENGAGELAB_DEV_SECRET", SECRET)
        monkeypatch.setenv("ENGAGELAB_BASE_URL", live.url)
        yield live


def offline(monkeypatch: pytest.MonkeyPatch, server: OTPServer) -> None:
    """Stop the server and forget the credentials: replay must need neither."""
    server.stop()
    monkeypatch.delenv("ENGAGELAB_DEV_KEY")
    monkeypatch.delenv("ENGAGELAB_DEV_SECRET")


def cassette(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    return read_cassette(pytester.path / "cassettes" / name)


def interactions(pytester: pytest.Pytester, name: str) -> list[tuple[str, str]]:
    found = cassette(pytester, name)["interactions"]
    assert isinstance(found, list)
    return [(i["request"]["method"], i["request"]["uri"].split("/", 3)[3]) for i in found]


# -- record, then replay offline ----------------------------------------------------------


def test_once_records_then_replays_with_the_server_stopped(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    recorded = pytester.runpytest("--engagelab-record-mode=once")
    recorded.assert_outcomes(passed=1)
    server.assert_sent_once(to="+6591234567", template_id="login")
    name = "test_signup/test_send_and_verify.yaml"
    assert interactions(pytester, name) == [("POST", "v1/messages"), ("POST", "v1/verifications")]
    text = (pytester.path / "cassettes" / name).read_text()
    assert "<ENGAGELAB_AUTHORIZATION>" in text

    offline(monkeypatch, server)
    replayed = pytester.runpytest()
    replayed.assert_outcomes(passed=1)


def test_async_client_records_and_replays(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_async="""
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        @pytest.mark.engagelab_cassette("async/send")
        async def test_send(otp_async_client):
            sent = await otp_async_client.send_code("+6591234567", "123456", "login")
            assert sent.send_channel == "sms"
        """
    )
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    assert interactions(pytester, "async/send.yaml") == [("POST", "v1/codes")]
    offline(monkeypatch, server)
    pytester.runpytest().assert_outcomes(passed=1)


def test_the_users_own_httpx_code_is_recorded_and_replayed(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_raw="""
        import httpx, pytest

        @pytest.mark.engagelab_cassette
        def test_raw(engagelab_cassette):
            credentials = engagelab_cassette.credentials
            answer = httpx.post(
                credentials.base_url + "/v1/custom-messages",
                json={"to": "+6591234567", "template": {"id": "promo", "params": {"code": "1"}}},
                auth=(credentials.dev_key, credentials.dev_secret),
            )
            assert answer.status_code == 200, answer.text
        """
    )
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    assert interactions(pytester, "test_raw/test_raw.yaml") == [("POST", "v1/custom-messages")]
    offline(monkeypatch, server)
    pytester.runpytest().assert_outcomes(passed=1)


def test_new_episodes_adds_to_an_existing_cassette(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    pytester.makepyfile(
        test_signup=SEND_AND_VERIFY
        + """
    otp_client.send("+6598765432", "login")
"""
    )
    pytester.runpytest("--engagelab-record-mode=new_episodes").assert_outcomes(passed=1)
    name = "test_signup/test_send_and_verify.yaml"
    assert interactions(pytester, name) == [
        ("POST", "v1/messages"),
        ("POST", "v1/verifications"),
        ("POST", "v1/messages"),
    ]
    # the first two were replayed, only the new one reached the server
    assert [m.to for m in server.sent] == ["+6591234567", "+6598765432"]
    offline(monkeypatch, server)
    pytester.runpytest().assert_outcomes(passed=1)


def test_all_records_every_request_again(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    name = "test_signup/test_send_and_verify.yaml"
    before = cassette(pytester, name)["interactions"][0]["response"]["body"]["string"]
    pytester.runpytest("--engagelab-record-mode=all").assert_outcomes(passed=1)
    after = cassette(pytester, name)["interactions"][1]["response"]["body"]["string"]
    assert len(server.sent) == 2  # both runs reached the server
    assert '"message_id"' in before
    assert '"message_id"' in after
    assert before != after  # a new message id: the answer was recorded again
    # vcrpy's "all": recorded interactions replace those they match; others stay (the old
    # verify carried the old message id) -- "rewrite" is the mode that starts empty
    assert interactions(pytester, name) == [
        ("POST", "v1/verifications"),
        ("POST", "v1/messages"),
        ("POST", "v1/verifications"),
    ]
    offline(monkeypatch, server)
    pytester.runpytest().assert_outcomes(passed=1)


def test_rewrite_replaces_the_cassette_dropping_what_the_test_no_longer_sends(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    pytester.makepyfile(
        test_signup="""
        import pytest

        @pytest.mark.engagelab_cassette
        def test_send_and_verify(otp_client):
            otp_client.send("+6591234567", "login", language="en")
        """
    )
    pytester.runpytest("--engagelab-record-mode=rewrite").assert_outcomes(passed=1)
    name = "test_signup/test_send_and_verify.yaml"
    assert interactions(pytester, name) == [("POST", "v1/messages")]
    offline(monkeypatch, server)
    pytester.runpytest().assert_outcomes(passed=1)


def test_once_does_not_add_to_an_existing_cassette_and_says_how(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    pytester.makepyfile(test_signup=SEND_AND_VERIFY.replace('"000000"', '"111111"'))
    result = pytester.runpytest("--engagelab-record-mode=once")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "pytest-engagelab: cassette cassettes/test_signup/test_send_and_verify.yaml has no "
            "answer for this request: no recorded interaction matches it; record mode 'once' "
            "does not add to an existing cassette.",
            '  request:          POST /v1/verifications {"message_id": "*", '
            '"verify_code": "111111"}',
            '  closest recorded: POST /v1/verifications {"message_id": "*", '
            '"verify_code": "000000"}',
            '    differs in the JSON body: {"message_id":"*","verify_code":"111111"} != '
            '{"message_id":"*","verify_code":"000000"}',
            "  pytest test_signup.py::test_send_and_verify --engagelab-record-mode=new_episodes",
            "(the request was made at test_signup.py:*)",
        ]
    )
    assert len(server.sent) == 1  # the unmatched verify never reached the server


def test_a_failed_recording_leaves_the_old_cassette(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    path = pytester.path / "cassettes" / "test_signup" / "test_send_and_verify.yaml"
    before = path.read_bytes()
    pytester.makepyfile(test_signup=SEND_AND_VERIFY + "    assert False, 'the test fails'\n")
    pytester.runpytest("--engagelab-record-mode=rewrite").assert_outcomes(failed=1)
    assert path.read_bytes() == before
    assert len(server.sent) == 2  # it did record, but did not write
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_a_failed_first_recording_writes_no_cassette(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY + "    assert False\n")
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(failed=1)
    assert not (pytester.path / "cassettes").exists()


# -- replay: nothing reaches the network ---------------------------------------------------------


def test_replay_without_a_cassette_fails_names_the_file_and_sends_nothing(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENGAGELAB_DEV_KEY")  # replay: no credentials; the server still runs
    monkeypatch.delenv("ENGAGELAB_DEV_SECRET")
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "pytest-engagelab: cassette cassettes/test_signup/test_send_and_verify.yaml has no "
            "answer for this request: the cassette does not exist; record mode 'none' only "
            "replays.",
            '  request:          POST /v1/messages {"template": {"id": "login", '
            '"language": "en"}, "to": "+6591234567"}',
            "  closest recorded: none (no recorded interactions)",
            "To record it against the real endpoint (needs ENGAGELAB_DEV_KEY and "
            "ENGAGELAB_DEV_SECRET), run:",
            "  pytest test_signup.py::test_send_and_verify --engagelab-record-mode=once",
        ]
    )
    assert server.sent == []


def test_replay_matches_json_bodies_as_data(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    path = pytester.path / "cassettes" / "test_signup" / "test_send_and_verify.yaml"
    data = yaml.safe_load(path.read_text())
    request = data["interactions"][0]["request"]
    assert request["body"] == '{"to":"+6591234567","template":{"id":"login","language":"en"}}'
    request["body"] = '{ "template": {"language": "en", "id": "login"},\n  "to": "+6591234567" }'
    path.write_text(yaml.safe_dump(data))
    offline(monkeypatch, server)
    pytester.runpytest().assert_outcomes(passed=1)


def test_each_recorded_answer_plays_once(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    pytester.makepyfile(
        test_signup=SEND_AND_VERIFY.replace(
            "    assert otp_client.verify",
            '    otp_client.send("+6591234567", "login", language="en")\n'
            "    assert otp_client.verify",
        )
    )
    offline(monkeypatch, server)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*has no answer for this request: its matching interaction was already played*"]
    )


# -- misuse and broken files -----------------------------------------------------------------


def test_recording_without_credentials_is_a_one_line_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    result = pytester.runpytest("--engagelab-record-mode=new_episodes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-engagelab: record mode 'new_episodes' records against the real "
            "EngageLab API and needs ENGAGELAB_DEV_KEY and ENGAGELAB_DEV_SECRET set in the "
            "environment (ENGAGELAB_BASE_URL optional); replaying "
            "(--engagelab-record-mode=none) needs no credentials"
        ]
    )


def test_an_unknown_record_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--engagelab-record-mode=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*argument --engagelab-record-mode: invalid choice: 'sometimes' (choose from "
            "*none*once*new_episodes*all*rewrite*)"
        ]
    )
    pytester.makeini("[pytest]\nengagelab_record_mode = sometimes\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-engagelab: ini option engagelab_record_mode = 'sometimes' is not a "
            "record mode; use one of: none, once, new_episodes, all, rewrite"
        ]
    )


def test_the_ini_record_mode_is_the_default_and_the_option_wins(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makeini("[pytest]\nengagelab_record_mode = once\n")
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    pytester.runpytest().assert_outcomes(passed=1)  # recorded by the ini's "once"
    assert len(server.sent) == 1
    pytester.runpytest("--engagelab-record-mode=none").assert_outcomes(passed=1)
    assert len(server.sent) == 1


def test_otp_mock_and_a_cassette_in_one_test_are_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_both="""
        import pytest

        @pytest.mark.engagelab_cassette
        def test_both(otp_mock, otp_client):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*pytest-engagelab: this test is marked @pytest.mark.engagelab_cassette and asks "
            "for otp_mock: respx (otp_mock) and vcrpy (the cassette) both patch httpx's "
            "transport, so one would silently answer the other's requests. Use otp_mock to "
            "test against the emulator, or the cassette to replay what EngageLab answered, not "
            "both in one test."
        ]
    )


def test_without_the_marker_otp_client_still_talks_to_the_emulator(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_plain(otp_client, otp_mock, engagelab_cassette):
            assert engagelab_cassette is None
            otp_client.send("+6591234567", "login")
            otp_mock.assert_sent_once(to="+6591234567")
            assert "vcr" not in sys.modules
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("interactions: [\n  - {request: 1\n", "not valid YAML (*)"),
        (
            "version: 2\ninteractions: []\n",
            "format version 2 is not supported (*); record it again",
        ),
        ("- just\n- a list\n", "expected a mapping at the top, found list"),
        ("", "the file is empty; delete it or record it again"),
        ("version: 1\ninteractions:\n- {request: {}}\n", "interaction 1 must be a mapping *"),
    ],
    ids=["bad-yaml", "version", "list", "empty", "no-response"],
)
def test_an_unreadable_cassette_is_reported_with_its_path_and_problem(
    pytester: pytest.Pytester, content: str, problem: str
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    path = pytester.path / "cassettes" / "test_signup" / "test_send_and_verify.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*pytest-engagelab: cassette {path}: {problem}"])
    assert path.read_text() == content  # left alone


def test_the_cassette_directory_comes_from_the_ini_relative_to_the_rootdir(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makeini("[pytest]\nengagelab_cassette_dir = tests/recorded\n")
    pytester.mkpydir("sub").joinpath("test_deep.py").write_text(SEND_AND_VERIFY)
    pytester.runpytest("sub", "--engagelab-record-mode=once").assert_outcomes(passed=1)
    written = pytester.path / "tests" / "recorded" / "sub.test_deep" / "test_send_and_verify.yaml"
    assert written.is_file()


# -- secrets -------------------------------------------------------------------------------


def test_no_byte_written_holds_a_secret(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record with a known key and secret (plus an extra secret echoed in a body and a URL),
    fail on purpose, miss on purpose, then search every file and every line of output."""
    monkeypatch.setenv("MY_TOKEN", EXTRA)
    pytester.makeini("[pytest]\nengagelab_extra_secrets =\n    $MY_TOKEN\n")
    pytester.makepyfile(
        test_leaky="""
        import os
        import httpx, pytest

        @pytest.mark.engagelab_cassette
        def test_leaky(otp_client, engagelab_cassette):
            c = engagelab_cassette.credentials
            otp_client.send("+6591234567", "login", params={"echo": c.dev_secret})
            secret_everywhere = f"{c.dev_key}:{c.dev_secret}"
            httpx.post(
                c.base_url + "/v1/messages?key=" + c.dev_key + "&t=" + os.environ["MY_TOKEN"],
                json={"to": "+6591234567", "template": {"id": secret_everywhere}},
                auth=(c.dev_key, c.dev_secret),
                headers={"x-token": os.environ["MY_TOKEN"]},
            )
            otp_client.verify("no-such-message", "000000")  # a 4001 answer: a failing test

        @pytest.mark.engagelab_cassette
        def test_passes(otp_client, engagelab_cassette):
            c = engagelab_cassette.credentials
            otp_client.send("+6591234567", "login", params={"echo": c.dev_secret, "k": c.dev_key})
            httpx.post(
                c.base_url + "/v1/codes?key=" + c.dev_key,
                json={"to": "+6598765432", "code": os.environ["MY_TOKEN"],
                      "template": {"id": f"{c.dev_key}:{c.dev_secret}"}},
                auth=(c.dev_key, c.dev_secret),
            )
        """
    )
    outputs = []
    first = pytester.runpytest("--engagelab-record-mode=once", "-rA", "-vv")
    first.assert_outcomes(passed=1, failed=1)
    outputs += [first.stdout.str(), first.stderr.str()]
    # the same run once more: the passing test's cassette exists, so once misses (a message)
    pytester.makepyfile(
        test_more="""
        import httpx, pytest

        @pytest.mark.engagelab_cassette("test_leaky/test_passes")
        def test_more(otp_client, engagelab_cassette):
            c = engagelab_cassette.credentials
            otp_client.send("+6591234567", "other", params={"echo": c.dev_secret})
        """
    )
    second = pytester.runpytest("--engagelab-record-mode=once", "test_more.py", "-vv")
    second.assert_outcomes(failed=1)
    second.stdout.fnmatch_lines(['*"echo": "<ENGAGELAB_DEV_SECRET>"*'])
    outputs += [second.stdout.str(), second.stderr.str()]

    written = cassette(pytester, "test_leaky/test_passes.yaml")
    assert len(written["interactions"]) == 2
    files = [p for p in pytester.path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".yaml" for p in files)
    for secret in FORBIDDEN:
        for path in files:
            assert secret.encode() not in path.read_bytes(), (secret, path)
        for output in outputs:
            assert secret not in output
    text = (pytester.path / "cassettes" / "test_leaky" / "test_passes.yaml").read_text()
    for placeholder in ("<ENGAGELAB_DEV_SECRET>", "<ENGAGELAB_KEY:SECRET>", "<ENGAGELAB_DEV_KEY>"):
        assert placeholder in text
    assert "<ENGAGELAB_EXTRA_SECRET>" in text


#: An extra secret that URL-encoding changes in every way: a "/" (kept by ``quote``'s default
#: ``safe="/"``), non-ASCII letters (percent- and \\u-escaped) and a space.
URL_SECRET = "url/Tök€n 9xQ"


def url_and_json_forms(secret: str) -> set[str]:
    """Every way a client may spell ``secret`` in a URL or a JSON body."""
    encoded = {
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        quote_plus(secret, safe="/"),
    }
    lower = {re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in encoded}
    escaped = json.dumps(secret)[1:-1]
    upper = re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), escaped)
    in_json = {escaped, upper, json.dumps(secret, ensure_ascii=False)[1:-1]}
    slashed = {form.replace("/", "\\/") for form in in_json}
    return {secret} | encoded | lower | in_json | slashed


def test_a_url_encoded_secret_never_reaches_the_cassette(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``urllib.parse.quote(secret)`` keeps "/" as is; percent escapes may be lower case;
    a JSON encoder may write "/" as "\\/": none of these reaches the file."""
    monkeypatch.setenv("URL_TOKEN", URL_SECRET)
    pytester.makeini("[pytest]\nengagelab_extra_secrets =\n    $URL_TOKEN\n")
    pytester.makepyfile(
        test_encoded="""
        import json, os, re
        from urllib.parse import quote
        import httpx, pytest

        @pytest.mark.engagelab_cassette
        def test_encoded(engagelab_cassette):
            c = engagelab_cassette.credentials
            token = os.environ["URL_TOKEN"]
            lower = re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(token))
            body = json.dumps({"to": "+6591234567", "code": token}).replace("/", "\\\\/")
            httpx.post(
                c.base_url + "/v1/codes?t=" + quote(token) + "&u=" + lower,
                content=body.encode(),
                headers={"content-type": "application/json", "x-token": quote(token)},
                auth=(c.dev_key, c.dev_secret),
            )
        """
    )
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    path = pytester.path / "cassettes" / "test_encoded" / "test_encoded.yaml"
    request = read_cassette(path)["interactions"][0]["request"]
    assert "?t=<ENGAGELAB_EXTRA_SECRET>&u=<ENGAGELAB_EXTRA_SECRET>" in request["uri"]
    assert request["headers"]["x-token"] == ["<ENGAGELAB_EXTRA_SECRET>"]
    assert '"code": "<ENGAGELAB_EXTRA_SECRET>"' in request["body"]
    written = path.read_bytes()
    for form in url_and_json_forms(URL_SECRET):
        assert form.encode() not in written, form


def test_a_misspelt_secret_variable_stops_recording_and_is_ignored_on_replay(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    misspelt = "[pytest]\nengagelab_extra_secrets =\n    $NOPE_UNSET\n"
    pytester.makeini(misspelt)
    result = pytester.runpytest("--engagelab-record-mode=once")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-engagelab: engagelab_extra_secrets names $NOPE_UNSET, which is not "
            "set; set it or remove the line"
        ]
    )
    monkeypatch.setenv("EMPTY_TOKEN", " ")
    pytester.makeini("[pytest]\nengagelab_extra_secrets =\n    $EMPTY_TOKEN\n")
    result = pytester.runpytest("--engagelab-record-mode=once")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-engagelab: engagelab_extra_secrets names $EMPTY_TOKEN, which is "
            "empty; set it or remove the line"
        ]
    )
    assert server.sent == []  # stopped before a request was made
    assert not (pytester.path / "cassettes").exists()

    pytester.makeini("[pytest]\n")
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    pytester.makeini(misspelt)
    offline(monkeypatch, server)
    pytester.runpytest().assert_outcomes(passed=1)  # replay writes no secret: no need for it


@pytest.mark.parametrize(("configured", "long_enough"), [("Qz9", "Qz9xY7"), ("$SHORT", "$LONG")])
def test_a_short_extra_secret_is_refused_without_showing_it(
    pytester: pytest.Pytester,
    server: OTPServer,
    monkeypatch: pytest.MonkeyPatch,
    configured: str,
    long_enough: str,
) -> None:
    """A secret such as "ab" would garble "pytest-engagelab" in every message."""
    monkeypatch.setenv("SHORT", "Qz9")
    monkeypatch.setenv("LONG", "Qz9xY7")
    pytester.makeini(f"[pytest]\nengagelab_extra_secrets =\n    {configured}\n")
    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    for args in ([], ["--engagelab-record-mode=once"]):
        result = pytester.runpytest(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        result.stderr.fnmatch_lines(
            [
                "ERROR: pytest-engagelab: engagelab_extra_secrets has a value of 3 characters; "
                "secrets shorter than 6 characters cannot be scrubbed safely"
            ]
        )
        assert "Qz9" not in result.stdout.str() + result.stderr.str()
    assert server.sent == []
    pytester.makeini(f"[pytest]\nengagelab_extra_secrets =\n    {long_enough}\n")  # six: enough
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)


def test_recipients_are_redacted_and_replay_still_matches(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nengagelab_redact_recipients = true\n")
    server.add_template("mail", strategy="email")
    pytester.makepyfile(
        test_signup=SEND_AND_VERIFY
        + '    otp_client.send_code("someone@example.com", "1234", "mail", params={})\n'
    )
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    path = pytester.path / "cassettes" / "test_signup" / "test_send_and_verify.yaml"
    text = path.read_text()
    assert "+6591234567" not in text
    assert "someone@example.com" not in text
    assert redact_recipients("+6591234567") in text
    assert redact_recipients("someone@example.com") in text
    offline(monkeypatch, server)
    pytester.runpytest().assert_outcomes(passed=1)


# -- xdist ---------------------------------------------------------------------------------


def test_recording_under_xdist_clobbers_nothing_and_misses_nothing(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.engagelab_cassette
        @pytest.mark.parametrize("n", range(12))
        def test_send(otp_client, n):
            sent = otp_client.send(f"+659123{n:04d}", f"t{n}")
            otp_client.verify(sent.message_id, str(n))

        @pytest.mark.engagelab_cassette
        class TestGroup:
            @pytest.mark.parametrize("n", range(4))
            def test_code(self, otp_client, n):
                otp_client.send_code(f"+659876{n:04d}", "1234", f"c{n}")
        """
    )
    pytester.runpytest("-n", "2", "--engagelab-record-mode=once").assert_outcomes(passed=16)
    files = sorted((pytester.path / "cassettes" / "test_many").iterdir())
    assert [p.name for p in files] == sorted(
        [f"test_send[{n}].yaml" for n in range(12)]
        + [f"TestGroup.test_code[{n}].yaml" for n in range(4)]
    )
    for n in range(12):
        data = read_cassette(pytester.path / "cassettes" / "test_many" / f"test_send[{n}].yaml")
        (send, verify) = data["interactions"]
        assert f"+659123{n:04d}" in send["request"]["body"]
        assert f'"verify_code":"{n}"' in verify["request"]["body"]
    assert check_drift(pytester.path / "cassettes").ok
    offline(monkeypatch, server)
    pytester.runpytest("-n", "2").assert_outcomes(passed=16)


# -- the pieces ----------------------------------------------------------------------------


def test_scrubber_replaces_every_form_of_the_credentials() -> None:
    scrubber = Scrubber("my-key", "my/secret+1", extra_secrets=["tok"])
    token = base64.b64encode(b"my-key:my/secret+1").decode()
    text = f"a my-key b my/secret+1 c my-key:my/secret+1 d {token} e my%2Fsecret%2B1 f tok"
    assert scrubber.text(text) == (
        "a <ENGAGELAB_DEV_KEY> b <ENGAGELAB_DEV_SECRET> c <ENGAGELAB_KEY:SECRET> "
        "d <ENGAGELAB_BASIC_TOKEN> e <ENGAGELAB_DEV_SECRET> f <ENGAGELAB_EXTRA_SECRET>"
    )
    assert scrubber.data(b'{"s": "my/secret+1"}') == b'{"s": "<ENGAGELAB_DEV_SECRET>"}'
    assert scrubber.authorization("Basic " + token) == "<ENGAGELAB_AUTHORIZATION>"
    assert scrubber.authorization("Basic d3Jvbmc6d3Jvbmc=") == "<REDACTED_AUTHORIZATION>"
    assert scrubber.leaks("x my/secret+1 y")
    assert not scrubber.leaks("nothing here")


def test_scrubber_knows_every_url_and_json_spelling_of_a_secret() -> None:
    scrubber = Scrubber(KEY, SECRET, extra_secrets=[URL_SECRET])
    forms = url_and_json_forms(URL_SECRET)
    assert len(forms) == 14  # so a broken helper cannot pass this test by listing fewer
    for form in forms:
        assert scrubber.leaks(f"a={form}&b"), form  # the check before a cassette is written
        assert scrubber.text(f"a={form}&b") == "a=<ENGAGELAB_EXTRA_SECRET>&b", form
        assert scrubber.data(form.encode()) == b"<ENGAGELAB_EXTRA_SECRET>", form


def test_redaction_is_stable_and_spares_magic_numbers_and_placeholders() -> None:
    once = redact_recipients('{"to": "+6591234567", "cc": "Ann@Example.com"}')
    assert once == redact_recipients('{"to": "+6591234567", "cc": "ann@example.com"}')
    assert "+6591234567" not in once
    assert "example.com" not in once.lower()
    assert redact_recipients(once) == once
    assert redact_recipients("+10000005012") == "+10000005012"
    assert redact_recipients("+6591234567") != redact_recipients("+6591234568")


def test_cassette_file_names() -> None:
    assert cassette_file_name("tests/test_a.py", "test_b") == "tests.test_a/test_b.yaml"
    assert (
        cassette_file_name("tests/test_a.py", "TestC::test_d[en-+65 1]")
        == "tests.test_a/TestC.test_d[en-+65_1].yaml"
    )
    assert cassette_file_name("x.py", "t", "signup/send") == "signup/send.yaml"
    assert cassette_file_name("x.py", "t", "a.yml") == "a.yml"
    with pytest.raises(ValueError, match="must be a relative path inside the directory"):
        cassette_file_name("x.py", "t", "../escape")


def test_loading_the_plugin_does_not_import_vcr(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_load="""
        import sys

        def test_no_vcr(pytestconfig):
            assert pytestconfig.pluginmanager.hasplugin("engagelab")
            assert "vcr" not in sys.modules
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_written_cassettes_are_readable_by_plain_vcrpy(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    import vcr  # type: ignore[import-untyped]

    pytester.makepyfile(test_signup=SEND_AND_VERIFY)
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    path = pytester.path / "cassettes" / "test_signup" / "test_send_and_verify.yaml"
    with vcr.use_cassette(os.fspath(path), record_mode="none") as loaded:
        assert len(loaded) == 2
    assert Path(path).read_text().startswith("# pytest-engagelab cassette")


# -- the live suite ------------------------------------------------------------------------

LIVE_SUITE = Path(__file__).resolve().parent / "live"


def test_the_live_suite_is_skipped_without_credentials(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(str(LIVE_SUITE), "-rs")
    result.assert_outcomes(skipped=11)
    result.stdout.fnmatch_lines(
        ["*live: set ENGAGELAB_DEV_KEY and ENGAGELAB_DEV_SECRET to re-record*"]
    )


def test_the_live_suite_re_records_every_reference_cassette_it_can(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live suite against an OTPServer standing in for EngageLab: it records, redacts,
    and what it records shows no drift."""
    emulator = Emulator(dev_key=KEY, dev_secret=SECRET, strict_templates=True)
    for template in ("otp", "codes", "custom"):
        emulator.add_template(template)
    emulator.add_template("mail", strategy="email")
    live_env = {
        "ENGAGELAB_DEV_KEY": KEY,
        "ENGAGELAB_DEV_SECRET": SECRET,
        "ENGAGELAB_LIVE_TO": "+6590001111",
        "ENGAGELAB_LIVE_TEMPLATE": "otp",
        "ENGAGELAB_LIVE_CODE_TEMPLATE": "codes",
        "ENGAGELAB_LIVE_CUSTOM_TEMPLATE": "custom",
        "ENGAGELAB_LIVE_EMAIL": "me@example.org",
        "ENGAGELAB_LIVE_EMAIL_TEMPLATE": "mail",
    }
    for name, value in live_env.items():
        monkeypatch.setenv(name, value)
    target = pytester.path / "reference"
    with OTPServer(emulator) as live:
        monkeypatch.setenv("ENGAGELAB_BASE_URL", live.url)
        args = [str(LIVE_SUITE), "-m", "live", "--engagelab-record-mode=rewrite"]
        args += ["-o", f"engagelab_cassette_dir={target}"]
        refused = pytester.runpytest(*args)
        refused.assert_outcomes(errors=11)
        refused.stdout.fnmatch_lines(["*-o engagelab_redact_recipients=true*"])
        assert not target.exists()
        pytester.runpytest(*args, "-o", "engagelab_redact_recipients=true").assert_outcomes(
            passed=11
        )
    written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*.yaml"))
    assert len(written) == 11
    assert "messages/send_verify_limit.yaml" in written
    for path in target.rglob("*.yaml"):
        text = path.read_text()
        assert "+6590001111" not in text
        assert "me@example.org" not in text
    assert check_drift(target).ok


def test_two_tests_recording_into_one_cassette_are_refused(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makepyfile(
        test_shared="""
        import pytest

        pytestmark = pytest.mark.engagelab_cassette("shared")

        def test_one(otp_client):
            pass

        def test_two(otp_client):
            pass
        """
    )
    result = pytester.runpytest("--engagelab-record-mode=once")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-engagelab: test_shared.py::test_one and test_shared.py::test_two both "
            f"record into cassette {pytester.path / 'cassettes' / 'shared.yaml'}; recording one "
            "would overwrite the other: give each test its own @pytest.mark.engagelab_cassette "
            "name"
        ]
    )
    # replaying one cassette from several tests is fine (they read, nobody writes)
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_a_wrong_marker_argument_is_explained(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.engagelab_cassette("a", "b")
        def test_two_names(otp_client):
            pass

        @pytest.mark.engagelab_cassette("../outside")
        def test_escape(otp_client):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.engagelab_cassette takes at most one argument, the cassette name "
            "(a string such as 'signup/send_code'), got args=('a', 'b') kwargs={}",
            "*@pytest.mark.engagelab_cassette: cassette name '../outside' must be a relative "
            "path inside the directory",
        ],
        consecutive=False,
    )


def test_replay_with_real_credentials_in_the_environment_keeps_them_out_of_messages(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makepyfile(
        test_env="""
        import os
        import httpx, pytest

        @pytest.mark.engagelab_cassette
        def test_env(engagelab_cassette):
            assert engagelab_cassette.credentials.dev_key == "test-dev-key"  # placeholders
            secret = os.environ["ENGAGELAB_DEV_SECRET"]
            print("the secret is", secret)
            httpx.post(os.environ["ENGAGELAB_BASE_URL"] + "/v1/codes", json={"code": secret})
        """
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            '  request:          POST /v1/codes {"code": "<ENGAGELAB_EXTRA_SECRET>"}',
            "the secret is <ENGAGELAB_EXTRA_SECRET>",
        ],
        consecutive=False,
    )
    output = result.stdout.str() + result.stderr.str()
    for secret in FORBIDDEN[:4]:
        assert secret not in output
    assert server.sent == []


def test_the_persister_refuses_to_write_a_secret_and_writes_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vcr.request import Request  # type: ignore[import-untyped]
    from vcr.serializers import yamlserializer  # type: ignore[import-untyped]

    from pytest_engagelab.cassettes import AtomicPersister, CassetteError

    persister = AtomicPersister(scrubber=Scrubber(KEY, SECRET))
    path = tmp_path / "c.yaml"
    path.write_text("old")
    leaky = Request("POST", "https://x/v1/messages", f'{{"s": "{SECRET}"}}', {})
    response = {"status": {"code": 200, "message": "OK"}, "headers": {}, "body": {"string": b""}}
    cassette = {"requests": [leaky], "responses": [response]}
    with pytest.raises(CassetteError, match="not written: a secret is still in it"):
        persister.save_cassette(str(path), cassette, yamlserializer)
    assert path.read_text() == "old"

    clean = Request("POST", "https://x/v1/messages", '{"s": "fine"}', {})
    cassette = {"requests": [clean], "responses": [response]}

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        persister.save_cassette(str(path), cassette, yamlserializer)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.yaml"]  # the temporary file is gone
    monkeypatch.undo()
    persister.save_cassette(str(path), cassette, yamlserializer)
    requests, _responses = persister.load_cassette(str(path), yamlserializer)
    assert requests[0].body == b'{"s": "fine"}'
