"""What speed costs nobody: a test that uses nothing of the kit pays nothing, and the fast
paths behave exactly as the slow ones did (seeded codes, fixture order, respx routers)."""

from __future__ import annotations

import cProfile
import pstats
import random
import string

import httpx
import pytest
import respx

from pytest_engagelab.doors.mock import OTPMock
from pytest_engagelab.emulator.core import DEFAULT_BASE_URL, Emulator

PLAIN_TEST = "def test_{n}():\n    assert {n} + 1 > {n}\n"


def _calls(pytester: pytest.Pytester, *args: str) -> int:
    """Function calls of one in-process pytest run of the files in ``pytester``."""
    profile = cProfile.Profile()
    profile.enable()
    result = pytester.inline_run("-q", "-p", "no:cacheprovider", *args)
    profile.disable()
    assert result.ret == 0
    return pstats.Stats(profile).total_calls  # type: ignore[attr-defined,no-any-return]


def test_a_test_that_uses_nothing_of_the_kit_makes_no_more_calls_than_without_it(
    pytester: pytest.Pytester,
) -> None:
    """The calls of 40 more plain tests, with the plugin and with ``-p no:engagelab``."""
    pytester.makepyfile(test_few="\n".join(PLAIN_TEST.format(n=n) for n in range(10)))
    pytester.makepyfile(test_more="\n".join(PLAIN_TEST.format(n=n) for n in range(10, 50)))
    for args in ((), ("-p", "no:engagelab")):  # warm: imports and caches
        _calls(pytester, *args, "test_few.py")
        _calls(pytester, *args, "test_few.py", "test_more.py")
    per_test = {}
    for label, args in (("loaded", ()), ("not loaded", ("-p", "no:engagelab"))):
        few = _calls(pytester, *args, "test_few.py")
        many = _calls(pytester, *args, "test_few.py", "test_more.py")
        per_test[label] = (many - few) / 40
    assert per_test["loaded"] <= per_test["not loaded"] * 1.01, per_test


def test_a_plain_test_gets_no_fixture_of_ours(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_plain(request):
            print("fixtures:", request.fixturenames)
        """
    )
    seen = []
    for args in ((), ("-p", "no:engagelab")):
        result = pytester.runpytest("-p", "no:cacheprovider", "-s", *args)
        result.assert_outcomes(passed=1)
        seen.append([line for line in result.outlines if "fixtures:" in line])
    assert seen[0] == seen[1]
    assert "engagelab" not in seen[0][0]
    assert "otp_" not in seen[0][0]


def test_marked_tests_get_the_check_and_the_cassette_first(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.engagelab(seed=1)

        @pytest.fixture
        def mine():
            return 1

        def test_module_marker(mine, request):
            assert request.fixturenames[0] == "_engagelab_marker_check"

        @pytest.mark.engagelab_cassette
        @pytest.mark.parametrize("n", [1, 2])
        def test_both(mine, n, engagelab_cassette, request):
            names = request.fixturenames
            assert names[:2] == ["_engagelab_marker_check", "engagelab_cassette"]
            assert engagelab_cassette is not None
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_a_bad_marker_on_a_test_without_fixtures_fails_its_setup(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.engagelab(seed="x")
        def test_marked():
            pass

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_marked*",
            "@pytest.mark.engagelab: seed must be an integer >= 0 or None, not 'x'",
        ],
        consecutive=True,
    )
    result.assert_outcomes(passed=1, errors=1)


def test_the_session_server_is_reset_before_the_tests_own_fixtures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def login(otp_server_session):
            otp_server_session.add_template("login", strategy="whatsapp")

        @pytest.mark.parametrize("n", [1, 2])
        def test_template_survives(login, otp_server_session, n):
            assert list(otp_server_session.emulator.templates) == ["login"]
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


@pytest.mark.parametrize("code_type", range(1, 8))
@pytest.mark.parametrize("seed", [0, 7, 2024])
def test_seeded_codes_are_those_random_choice_draws(code_type: int, seed: int) -> None:
    """The inlined code maker draws exactly what ``Random.choice`` per character drew."""
    alphabet = (
        (string.digits if code_type & 1 else "")
        + (string.ascii_lowercase if code_type & 2 else "")
        + (string.ascii_uppercase if code_type & 4 else "")
    )
    reference = random.Random(seed)
    reference.getrandbits(10)  # the emulator's worker id comes first
    emulator = Emulator(seed=seed)
    made = []
    for length in (4, 6, 10, 7):
        emulator.add_template(f"t{length}", code_length=length, code_type=code_type)
        expected = "".join(reference.choice(alphabet) for _ in range(length))
        made.append((emulator._make_code(emulator.templates[f"t{length}"]), expected))
    assert [got for got, _ in made] == [want for _, want in made]


def _send(client: httpx.Client, mock: OTPMock, to: str) -> httpx.Response:
    return client.post(
        f"{mock.base_url}/v1/messages",
        json={"to": to, "template": {"id": "login"}},
        auth=(mock.dev_key, mock.dev_secret),
    )


def test_a_respx_router_using_httpx_shares_the_patch_with_the_mock() -> None:
    """respx's own httpx-level router, started after the mock, answers its routes while
    the mock answers its base URL; each stops cleanly."""
    before = httpx.Client._transport_for_url
    with OTPMock() as mock, respx.mock(using="httpx", assert_all_called=True) as router:
        router.get("https://api.other.example/users").respond(200, json=["ann"])
        with httpx.Client() as client:
            assert client.get("https://api.other.example/users").json() == ["ann"]
            assert _send(client, mock, "+6591234567").status_code == 200
        with pytest.raises(respx.models.AllMockedAssertionError):
            httpx.get("https://api.unrouted.example/")
    assert httpx.Client._transport_for_url is before
    mock.assert_sent_once(to="+6591234567")


def test_the_fast_path_keeps_the_answer_exactly() -> None:
    with OTPMock() as mock, httpx.Client() as client:
        response = _send(client, mock, "+6591234567")
        unknown = client.get(f"{DEFAULT_BASE_URL}/v1/nothing")
    assert response.headers.multi_items() == [
        ("content-type", "application/json"),
        ("content-length", str(len(response.content))),
    ]
    assert response.json() == {"message_id": mock.sent[0].message_id, "send_channel": "sms"}
    assert response.content == (
        f'{{"message_id":"{mock.sent[0].message_id}","send_channel":"sms"}}'.encode()
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, 4001)
    assert unknown.is_stream_consumed


def test_the_plugin_knows_the_record_modes_and_variables_without_importing_the_cassettes() -> None:
    from pytest_engagelab import _plugin_shared
    from pytest_engagelab.cassettes import credentials, settings

    assert _plugin_shared.RECORD_MODES == settings.RECORD_MODES
    assert _plugin_shared.CASSETTE_ENVIRON == (
        credentials.DEV_KEY_ENV,
        credentials.DEV_SECRET_ENV,
        credentials.BASE_URL_ENV,
    )


def test_a_suite_without_cassettes_does_not_import_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_plain():
            assert "pytest_engagelab.cassettes" not in sys.modules
            assert "pytest_engagelab.plugin" in sys.modules

        def test_mock(otp_mock):
            assert "pytest_engagelab.cassettes" not in sys.modules
        """
    )
    for name in ("ENGAGELAB_DEV_KEY", "ENGAGELAB_DEV_SECRET", "ENGAGELAB_BASE_URL"):
        pytester._monkeypatch.delenv(name, raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:recording")
    result.assert_outcomes(passed=2)
