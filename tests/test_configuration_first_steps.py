"""Configuration as a new user writes it (issue 16): base URLs with or without ``/v1``,
ini options with their real types, async tests under pytest-asyncio and anyio.  Each
runs a scratch project through ``pytester`` and asserts outcomes and exact lines."""

from __future__ import annotations

from collections.abc import Callable

import hypothesis
import pytest
import yaml

from pytest_engagelab.doors.server import OTPServer
from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.emulator.settings import api_root

# pytester unloads the modules an in-process run imported; the cassette code the outer
# process keeps would then read with one run's yaml classes another run's documents, and
# each run would import hypothesis (its plugin's summary) anew.  Imported here, they stay
# loaded across the runs below.
del hypothesis, yaml

# -- the base URL means the API's root, without /v1 ----------------------------------------


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("https://otp.api.engagelab.cc", "https://otp.api.engagelab.cc"),
        ("https://otp.api.engagelab.cc/", "https://otp.api.engagelab.cc"),
        ("https://otp.api.engagelab.cc/v1", "https://otp.api.engagelab.cc"),
        ("https://otp.api.engagelab.cc/v1/", "https://otp.api.engagelab.cc"),
        (" http://127.0.0.1:8080/v1 ", "http://127.0.0.1:8080"),
        ("https://proxy.example.test/otp/v1", "https://proxy.example.test/otp"),
        ("https://proxy.example.test/v10", "https://proxy.example.test/v10"),
    ],
)
def test_api_root_drops_one_trailing_v1_and_slashes(given: str, root: str) -> None:
    assert api_root(given) == root


def test_the_client_and_the_doors_take_a_v1_base_url_as_the_root() -> None:
    from pytest_engagelab import OTPClient
    from pytest_engagelab.doors.mock import OTPMock

    with OTPMock(base_url="https://otp.example.test/v1/") as otp:
        assert otp.base_url == "https://otp.example.test"
        with OTPClient(otp.dev_key, otp.dev_secret, base_url=otp.base_url + "/v1") as client:
            assert client.base_url == "https://otp.example.test"
            client.send("+6591234567", "login")
    (sent,) = otp.sent
    assert str(sent.request.url) == "https://otp.example.test/v1/messages"


def test_a_v1_base_url_in_the_marker_or_ini_serves_v1_messages_not_v1_v1(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nengagelab_base_url = https://otp.example.test/v1/\n")
    pytester.makepyfile(
        """
        import pytest

        def test_ini(otp_mock, otp_client):
            assert otp_mock.base_url == otp_client.base_url == "https://otp.example.test"
            otp_client.send("+6591234567", "login")
            sent = otp_mock.assert_sent_once(to="+6591234567")
            assert str(sent.request.url) == "https://otp.example.test/v1/messages"

        @pytest.mark.engagelab(base_url="https://other.example.test/v1")
        def test_marker(otp_mock, engagelab_settings):
            assert engagelab_settings.base_url == "https://otp.example.test"
            assert otp_mock.base_url == "https://other.example.test"
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_engagelab_base_url_with_v1_records_at_v1_messages_and_replays(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    recording_with: Callable[[str, str], None],
) -> None:
    key, secret = "base-url-key", "base-url-secret-8c1e"
    recording_with(key, secret)
    pytester.makepyfile(
        """
        import httpx
        import pytest

        @pytest.mark.engagelab_cassette("signup")
        def test_send(engagelab_cassette):
            credentials = engagelab_cassette.credentials
            assert not credentials.base_url.endswith("/v1")
            with httpx.Client(base_url=credentials.base_url,
                              auth=(credentials.dev_key, credentials.dev_secret)) as http:
                answer = http.post("/v1/messages",
                                   json={"to": "+6591234567", "template": {"id": "signup"}})
            assert answer.status_code == 200, answer.text
        """
    )
    with OTPServer(Emulator(dev_key=key, dev_secret=secret)) as stand_in:
        monkeypatch.setenv("ENGAGELAB_DEV_KEY", key)
        monkeypatch.setenv("ENGAGELAB_DEV_SECRET", secret)
        monkeypatch.setenv("ENGAGELAB_BASE_URL", stand_in.url + "/v1")
        pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
        (sent,) = stand_in.sent
        assert sent.endpoint == "/v1/messages"
    cassette = (pytester.path / "cassettes" / "signup.yaml").read_text()
    assert "/v1/v1/" not in cassette
    monkeypatch.setenv("ENGAGELAB_BASE_URL", "https://otp.api.engagelab.cc/v1")
    for name in ("ENGAGELAB_DEV_KEY", "ENGAGELAB_DEV_SECRET"):
        monkeypatch.delenv(name)
    pytester.runpytest().assert_outcomes(passed=1)  # replayed: the stand-in is gone


# -- ini options with their real types -------------------------------------------------------

_SHOW_SETTINGS = """
    def test_settings(engagelab_settings):
        s = engagelab_settings
        print("settings:", s.strict_templates, s.seed, s.journal_limit, s.assert_all_fired)
"""


@pytest.mark.parametrize(
    ("config", "text", "shown"),
    [
        (
            "pytest.ini",
            "[pytest]\nengagelab_strict_templates = on\nengagelab_seed = 42\n"
            "engagelab_journal_limit = 0\nengagelab_assert_all_fired = No\n",
            "settings: True 42 None False",
        ),
        (
            "pyproject.toml",  # [tool.pytest.ini_options]: TOML values read as in an ini file
            "[tool.pytest.ini_options]\nengagelab_strict_templates = true\n"
            "engagelab_seed = 7\nengagelab_journal_limit = 5\n",
            "settings: True 7 5 True",
        ),
        (
            "pyproject.toml",  # pytest 9's native [tool.pytest]: typed TOML values
            "[tool.pytest]\nengagelab_strict_templates = true\nengagelab_seed = 7\n"
            "engagelab_assert_all_fired = false\n",
            "settings: True 7 10000 False",
        ),
    ],
)
def test_typed_ini_values_reach_the_settings(
    pytester: pytest.Pytester, config: str, text: str, shown: str
) -> None:
    if text.startswith("[tool.pytest]\n") and pytest.version_tuple < (9,):
        pytest.skip("the native [tool.pytest] table came with pytest 9")
    (pytester.path / config).write_text(text)
    pytester.makepyfile(_SHOW_SETTINGS)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{shown}"])


def test_a_value_of_the_wrong_toml_type_is_one_usage_error(pytester: pytest.Pytester) -> None:
    if pytest.version_tuple < (9,):
        pytest.skip("the native [tool.pytest] table came with pytest 9")
    pytester.makepyprojecttoml('[tool.pytest]\nengagelab_strict_templates = "yes"\n')
    pytester.makepyfile("def test_never_runs(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line.strip()] == [
        "ERROR: pytest-engagelab: ini option engagelab_strict_templates must be a boolean "
        f"(true or false): {pytester.path / 'pyproject.toml'}: config option "
        "'engagelab_strict_templates' expects a bool, got str: 'yes'"
    ]


# -- async tests: pytest-asyncio (strict, auto, loop_scope="module") and anyio --------------

_ASYNC_TESTS = """
    import httpx
    import pytest

    {mark}
    async def test_send_and_verify(otp_mock, otp_async_client):
        sent = await otp_async_client.send("+6591234567", "signup")
        result = await otp_async_client.verify(sent.message_id, otp_mock.last_code("+6591234567"))
        assert result.verified

    {mark}
    async def test_own_async_client(otp_mock):
        async with httpx.AsyncClient(base_url=otp_mock.base_url,
                                     auth=(otp_mock.dev_key, otp_mock.dev_secret)) as http:
            answer = await http.post("/v1/messages",
                                     json={{"to": "+6591234567", "template": {{"id": "x"}}}})
        assert answer.json()["send_channel"] == "sms"
        otp_mock.assert_sent_once(to="+6591234567")  # a fresh emulator for each test
"""


@pytest.mark.parametrize(
    ("mark", "args"),
    [
        ("@pytest.mark.asyncio", ()),  # pytest-asyncio, strict mode (its default)
        ("", ("-o", "asyncio_mode=auto")),
        ('@pytest.mark.asyncio(loop_scope="module")', ()),
        ("@pytest.mark.anyio", ()),
    ],
    ids=["asyncio-strict", "asyncio-auto", "asyncio-module-loop", "anyio"],
)
def test_async_tests_use_the_fixtures_under_each_plugin(
    pytester: pytest.Pytester, mark: str, args: tuple[str, ...]
) -> None:
    pytester.makepyfile(_ASYNC_TESTS.format(mark=mark))
    if mark == "@pytest.mark.anyio":
        pytester.makeconftest(
            """
            import pytest

            @pytest.fixture
            def anyio_backend():
                return "asyncio"
            """
        )
    result = pytester.runpytest("-W", "error", *args)
    result.assert_outcomes(passed=2)
