"""Nothing lost, nothing leaked: each case tried as a user meets it (a pytester run of a
scratch project recording against a real HTTP server on loopback), asserting the
outcome, the lines shown and the files written.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml  # noqa: F401  # imported once: pytester's in-process runs must not re-import it

from pytest_engagelab import Emulator
from pytest_engagelab.callbacks import sign_callback, verify_callback_signature
from pytest_engagelab.cassettes import read_cassette
from pytest_engagelab.doors.server import OTPServer

pytest_plugins = ["pytester"]

KEY = "safe-key-5e1c7a90"
SECRET = "safe-secret-Pz4k8Hq2-Vn7"
FORMS = (KEY, SECRET, f"{KEY}:{SECRET}", base64.b64encode(f"{KEY}:{SECRET}".encode()).decode())

SEND = """
import httpx, pytest

@pytest.mark.engagelab_cassette
def test_send(engagelab_cassette):
    c = engagelab_cassette.credentials
    body = {"to": "+6591234567", "template": {"id": "login"}}
    answer = httpx.post(c.base_url + "/v1/messages", json=body, auth=(c.dev_key, c.dev_secret))
    assert answer.status_code == 200
"""
NAME = Path("cassettes/test_signup/test_send.yaml")


@pytest.fixture(autouse=True)
def _quick_inner_runs(cassette_inner_runs: None) -> None:
    """Every test here runs pytest inside: see ``cassette_inner_runs`` in conftest."""


@pytest.fixture
def server(
    monkeypatch: pytest.MonkeyPatch, recording_with: Callable[[str, str], None]
) -> Iterator[OTPServer]:
    recording_with(KEY, SECRET)
    with OTPServer(Emulator(dev_key=KEY, dev_secret=SECRET, rate_limit=False)) as live:
        monkeypatch.setenv("ENGAGELAB_DEV_KEY", KEY)
        monkeypatch.setenv("ENGAGELAB_DEV_SECRET", SECRET)
        monkeypatch.setenv("ENGAGELAB_BASE_URL", live.url)
        yield live


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + result.stderr.str()


def runs_of(secret: str, text: str, length: int = 8) -> list[str]:
    """Every run of ``length`` characters of ``secret`` that ``text`` shows."""
    return sorted(
        {
            secret[i : i + length]
            for i in range(len(secret) - length + 1)
            if secret[i : i + length] in text
        }
    )


# -- nothing lost -------------------------------------------------------------------------


def test_two_tests_sharing_a_cassette_under_xdist_show_the_message(
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
    result = pytester.runpytest("-n", "2", "--engagelab-record-mode=once")
    result.assert_outcomes(errors=2)
    assert "INTERNALERROR" not in output(result)
    message = (
        "pytest-engagelab: test_shared.py::test_one and test_shared.py::test_two both record "
        f"into cassette {pytester.path / 'cassettes' / 'shared.yaml'}; recording one would "
        "overwrite the other: give each test its own @pytest.mark.engagelab_cassette name"
    )
    # Once per test in its error report; the short summary repeats it in full only where
    # pytest does not shorten it (CI=true), so it is left out of the count.
    reports = output(result).split("short test summary info")[0]
    assert reports.count(message) == 2
    assert server.sent == []
    assert not (pytester.path / "cassettes").exists()


def test_a_test_that_errors_in_teardown_writes_no_cassette(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makepyfile(
        test_signup=SEND.replace("(engagelab_cassette):", "(engagelab_cassette, broken):"),
        conftest="""
        import pytest

        @pytest.fixture
        def broken():
            yield
            raise RuntimeError("teardown went wrong")
        """,
    )  # fmt: skip
    result = pytester.runpytest("--engagelab-record-mode=once")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: teardown went wrong"])
    assert len(server.sent) == 1  # it recorded...
    assert not (pytester.path / NAME).exists()  # ...and wrote nothing
    pytester.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef broken():\n    yield\n"
    )  # the teardown fixed: now it is written
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    assert len(read_cassette(pytester.path / NAME)["interactions"]) == 1


def test_a_rewrite_with_the_endpoint_down_keeps_the_committed_cassette(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makepyfile(test_signup=SEND)
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    before = (pytester.path / NAME).read_bytes()
    pytester.makepyfile(
        test_signup="""
        import httpx, pytest

        @pytest.mark.engagelab_cassette
        def test_send(engagelab_cassette):
            c = engagelab_cassette.credentials
            body = {"to": "+6591234567", "template": {"id": "login"}}
            try:
                httpx.post(c.base_url + "/v1/messages", json=body, auth=(c.dev_key, c.dev_secret))
            except httpx.TransportError:
                pass  # the app copes with an outage
        """
    )
    server.stop()  # the endpoint is down
    result = pytester.runpytest("--engagelab-record-mode=rewrite")
    result.assert_outcomes(passed=1)
    assert (pytester.path / NAME).read_bytes() == before
    result.stdout.fnmatch_lines(
        [f"{NAME.as_posix()}: rewrite recorded nothing; the old cassette (1 interactions) was kept"]
    )


def test_an_alias_bomb_is_refused_at_once_naming_the_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_signup=SEND)
    path = pytester.path / NAME
    path.parent.mkdir(parents=True)
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    path.write_text("version: 1\n" + "\n".join(levels) + "\ninteractions: []\n")
    assert len(path.read_bytes()) < 720
    started = time.perf_counter()
    result = pytester.runpytest()
    elapsed = time.perf_counter() - started
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*pytest-engagelab: cassette {path}: refused: its YAML aliases stand for more than "
            "* values though only * are written (an alias bomb?); write it without aliases "
            "(*name) or record it again"
        ]
    )
    assert elapsed < 5, elapsed


@pytest.mark.parametrize(("body", "kind"), [("[1, 2]", "list"), ("42", "int")])
def test_a_recorded_body_that_is_not_a_string_is_reported_naming_the_file(
    pytester: pytest.Pytester, body: str, kind: str
) -> None:
    pytester.makepyfile(test_signup=SEND)
    path = pytester.path / NAME
    path.parent.mkdir(parents=True)
    path.write_text(
        "version: 1\ninteractions:\n- request:\n    method: POST\n"
        "    uri: https://otp.api.engagelab.cc/v1/messages\n"
        f"    body: {body}\n    headers: {{}}\n"
        "  response:\n    status: {code: 200, message: OK}\n    headers: {}\n"
        "    body: {string: '{}'}\n"
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*pytest-engagelab: cassette {path}: interaction 1: the request body must be a "
            f"string (the JSON text, quoted), found {kind}"
        ]
    )
    assert "has no attribute 'decode'" not in output(result)


def test_true_does_not_replay_an_answer_recorded_for_1(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    test = """
    import httpx, pytest

    @pytest.mark.engagelab_cassette("flags")
    def test_flag(engagelab_cassette):
        c = engagelab_cassette.credentials
        body = {"to": "+6591234567", "template": {"id": "login", "params": {"flag": FLAG}}}
        httpx.post(c.base_url + "/v1/messages", json=body, auth=(c.dev_key, c.dev_secret))
    """
    pytester.makepyfile(test_flags=test.replace("FLAG", "1"))
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    server.stop()
    monkeypatch.delenv("ENGAGELAB_DEV_KEY")
    monkeypatch.delenv("ENGAGELAB_DEV_SECRET")
    pytester.runpytest().assert_outcomes(passed=1)  # 1 replays 1
    pytester.makepyfile(test_flags=test.replace("FLAG", "1.0"))
    pytester.runpytest().assert_outcomes(passed=1)  # the same JSON number
    pytester.makepyfile(test_flags=test.replace("FLAG", "True"))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "pytest-engagelab: cassette cassettes/flags.yaml has no answer for this request: "
            "no recorded interaction matches it; record mode 'none' only replays.",
            '  request:          POST /v1/messages {"template": {"id": "login", '
            '"params": {"flag": true}}, "to": "+6591234567"}',
            '  closest recorded: POST /v1/messages {"template": {"id": "login", '
            '"params": {"flag": 1}}, "to": "+6591234567"}',
            '    differs in the JSON body: {"to":"+6591234567","template":{"id":"login",'
            '"params":{"flag":true}}} != {"to":"+6591234567","template":{"id":"login",'
            '"params":{"flag":1}}}',
        ]
    )


def test_a_writer_killed_mid_write_leaves_no_temporary_after_the_next_write(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makepyfile(test_signup=SEND)
    path = pytester.path / NAME
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys\n"
            "from pathlib import Path\n"
            "from pytest_engagelab.cassettes.files import write_atomically\n"
            "os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)\n"
            "write_atomically(Path(sys.argv[1]), 'version: 1\\ninteractions: []\\n')\n",
            str(path),
        ],
        check=False,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL
    orphans = [p.name for p in path.parent.iterdir()]
    assert len(orphans) == 1
    assert orphans[0].startswith(".test_send.yaml.")
    assert orphans[0].endswith(".tmp")
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    assert [p.name for p in path.parent.iterdir()] == ["test_send.yaml"]


def test_a_fresh_temporary_of_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    from pytest_engagelab.cassettes.files import write_atomically

    target = tmp_path / "c.yaml"
    live = tmp_path / f".c.yaml.{os.getppid()}.abcd1234.tmp"  # our parent: alive
    live.write_text("half")
    old = tmp_path / ".c.yaml.abcd1234.tmp"  # the 0.1 form, with no process id
    old.write_text("half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    write_atomically(target, "version: 1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.yaml", live.name])


# -- nothing leaked -----------------------------------------------------------------------

QUERY = """
import httpx, pytest

@pytest.mark.engagelab_cassette
def test_query(engagelab_cassette):
    c = engagelab_cassette.credentials
    httpx.get(c.base_url + "/v1/template-configs?secret=" + c.dev_secret,
              auth=(c.dev_key, c.dev_secret))
"""


def test_log_records_are_scrubbed_while_recording(
    pytester: pytest.Pytester, server: OTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_logs=QUERY)
    log_file = pytester.path / "run.log"
    result = pytester.runpytest(
        "--engagelab-record-mode=once",
        "--log-cli-level=DEBUG",
        f"--log-file={log_file}",
        "--log-file-level=DEBUG",
    )
    result.assert_outcomes(passed=1)
    shown = output(result) + log_file.read_text()
    assert "HTTP Request: GET" in shown  # httpx's request line is there...
    assert "not in cassette, sending to real server" in shown  # ...and vcrpy's
    assert "secret=<ENGAGELAB_DEV_SECRET>" in shown
    for form in FORMS:
        assert form not in shown
    assert runs_of(SECRET, shown) == []


def test_shortened_values_under_l_show_no_run_of_eight_characters_of_a_secret(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    """pytest shows a long local as its first 118 and last 119 characters around '...':
    the secret straddles the cut, so no whole secret is shown, only part of one."""
    pytester.makepyfile(
        test_locals="""
        import pytest

        @pytest.mark.engagelab_cassette
        def test_locals(engagelab_cassette):
            c = engagelab_cassette.credentials
            padded = "x" * 107 + c.dev_secret + "y" * 300
            assert padded == "x" * 107 + "something else" + "y" * 300
        """
    )
    result = pytester.runpytest("--engagelab-record-mode=once", "-l")
    result.assert_outcomes(failed=1)
    shown = output(result)
    result.stdout.fnmatch_lines(
        ["*AssertionError: assert*", "padded     = 'xxxxxxxxxx*xxx<SECRET_PART>...yyy*yyy'"],
        consecutive=False,
    )
    for form in FORMS:
        assert form not in shown
    assert runs_of(SECRET, shown) == []


FRAMES_SECRET = "frames-secret-Tb6y1Kd0"


def test_library_frames_under_l_show_no_secret(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secret comes from the environment, as in a user's suite; the frames of
    ``OTPClient.__init__`` and ``verify_callback_signature`` are hidden under ``-l``."""
    monkeypatch.setenv("APP_SECRET", FRAMES_SECRET)
    pytester.makepyfile(
        test_frames="""
        import os
        from pytest_engagelab import OTPClient
        from pytest_engagelab.callbacks import sign_callback, verify_callback_signature

        def test_client():
            OTPClient("frames-key", os.environ["APP_SECRET"], base_url=None)

        def test_callback():
            header = sign_callback(username="u", secret="another-key-value", timestamp=1,
                                   nonce="n")
            verify_callback_signature(header, username="u", secret=os.environ["APP_SECRET"],
                                      now=1)
        """
    )
    result = pytester.runpytest("-l")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*AttributeError*",
            "*CallbackSignatureError: signature mismatch: not signed with this secret",
        ],
        consecutive=False,
    )
    shown = output(result)
    assert FRAMES_SECRET not in shown
    assert runs_of(FRAMES_SECRET, shown) == []
    expected = sign_callback(username="u", secret=FRAMES_SECRET, timestamp=1, nonce="n")
    assert expected.rsplit("=", 1)[1] not in shown  # the forgery is not shown


def test_a_test_parametrized_with_a_credential_keeps_it_out_of_the_file_name(
    pytester: pytest.Pytester, server: OTPServer
) -> None:
    pytester.makepyfile(
        test_param="""
        import os, httpx, pytest

        @pytest.mark.engagelab_cassette
        @pytest.mark.parametrize("secret", [os.environ["ENGAGELAB_DEV_SECRET"], "public"])
        def test_param(engagelab_cassette, secret):
            c = engagelab_cassette.credentials
            httpx.get(c.base_url + "/v1/template-configs", auth=(c.dev_key, c.dev_secret))
        """
    )
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=2)
    names = sorted(p.name for p in (pytester.path / "cassettes" / "test_param").iterdir())
    assert names == ["test_param[REDACTED].yaml", "test_param[public].yaml"]


def test_a_secret_with_a_backslash_and_a_quote_echoed_in_a_3002_message_is_scrubbed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
    recording_with: Callable[[str, str], None],
) -> None:  # fmt: skip
    secret = "odd\\secret'Q7-x9Lm"
    recording_with(KEY, secret)
    with OTPServer(Emulator(dev_key=KEY, dev_secret=secret, rate_limit=False)) as live:
        monkeypatch.setenv("ENGAGELAB_DEV_KEY", KEY)
        monkeypatch.setenv("ENGAGELAB_DEV_SECRET", secret)
        monkeypatch.setenv("ENGAGELAB_BASE_URL", live.url)
        pytester.makepyfile(
            test_echo="""
            import httpx, pytest

            @pytest.mark.engagelab_cassette
            def test_echo(engagelab_cassette):
                c = engagelab_cassette.credentials
                body = {"to": "+6591234567",
                        "template": {"id": "login", "language": c.dev_secret}}
                answer = httpx.post(c.base_url + "/v1/messages", json=body,
                                    auth=(c.dev_key, c.dev_secret))
                assert answer.json()["code"] == 3002
            """
        )
        pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    path = pytester.path / "cassettes" / "test_echo" / "test_echo.yaml"
    text = path.read_text()
    (interaction,) = read_cassette(path)["interactions"]
    answer = interaction["response"]["body"]["string"]
    assert 'template.language \\"<ENGAGELAB_DEV_SECRET>\\" is not supported' in answer
    assert "odd" not in text
    assert "Q7-x9Lm" not in text


def test_verifying_with_an_empty_secret_is_refused() -> None:
    header = "timestamp=1;nonce=n;username=u;signature=" + "0" * 64
    with pytest.raises(ValueError) as refused:
        verify_callback_signature(header, username="u", secret="", now=1)
    assert str(refused.value) == (
        "verify_callback_signature needs a non-empty secret; an empty one would accept "
        "headers anyone can sign (is the variable holding it unset?)"
    )
