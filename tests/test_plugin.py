"""The plugin as users meet it: a pytest run in a scratch project, through ``pytester``.

Each test writes a small test suite, runs pytest on it (in-process unless the
point is a fresh interpreter) and asserts the outcome and the exact lines a
user reads.  The plugin is loaded through its ``pytest11`` entry point, as in a
user's project: no conftest names it.
"""

from __future__ import annotations

import base64
import importlib.metadata
from pathlib import Path

import hypothesis
import pytest

# ``pytester`` comes from tests/conftest.py (pytest_plugins = ["pytester"]).
# pytester unloads every module an in-process run imported, and hypothesis's plugin
# imports all of hypothesis in each run's terminal summary: about a second a run.
# Imported once here, it stays loaded across the runs below.
del hypothesis

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


ALLOWED_KEYWORDS = (
    "dev_key, dev_secret, base_url, strict_templates, seed, journal_limit, "
    "assert_all_fired, key_status, forbidden_endpoints, rate_limit, max_verify_attempts, "
    "template_review, send_unapproved, phone_validation, mainland_china"
)


# -- registration, --fixtures, --help, --markers ---------------------------------------


def test_the_plugin_is_registered_through_its_pytest11_entry_point(
    pytester: pytest.Pytester,
) -> None:
    (entry_point,) = [
        ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "engagelab"
    ]
    assert entry_point.value == "pytest_engagelab.plugin"
    pytester.makepyfile(
        """
        def test_registered(pytestconfig):
            assert pytestconfig.pluginmanager.hasplugin("engagelab")
            plugin = pytestconfig.pluginmanager.get_plugin("engagelab")
            assert plugin.__name__ == "pytest_engagelab.plugin"
        """
    )
    result = pytester.runpytest("--trace-config")
    result.stdout.fnmatch_lines(["*engagelab*: *pytest_engagelab*plugin.py"])
    result.assert_outcomes(passed=1)


def test_disabling_the_plugin_removes_its_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_uses_the_mock(otp_mock):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:engagelab")
    result.stdout.fnmatch_lines(["*fixture 'otp_mock' not found*"])
    result.assert_outcomes(errors=1)


@pytest.mark.parametrize(
    ("fixture", "first_line"),
    [
        (
            "engagelab_settings [session scope]",
            "Suite-wide emulator settings, from the ``engagelab_*`` ini options.",
        ),
        (
            "otp_mock",
            "EngageLab's OTP API emulated in-process for every httpx client (an ``OTPMock``).",
        ),
        ("otp_client", "An ``OTPClient`` wired to ``otp_mock``'s base URL and credentials."),
        (
            "otp_async_client",
            "An ``AsyncOTPClient`` wired to ``otp_mock``'s base URL and credentials.",
        ),
        (
            "otp_server",
            "EngageLab's OTP API on a real HTTP socket, for clients that do not use httpx.",
        ),
        (
            "otp_server_session [session scope]",
            "One ``OTPServer`` for the whole session, reset before each test that uses it.",
        ),
        (
            "engagelab_cassette",
            "The vcrpy cassette of a test marked ``@pytest.mark.engagelab_cassette``, "
            "else ``None``.",
        ),
    ],
)
def test_fixtures_lists_each_fixture_with_its_docstring(
    pytester: pytest.Pytester, fixture: str, first_line: str
) -> None:
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(["*fixtures defined from pytest_engagelab.plugin*"])
    result.stdout.fnmatch_lines(
        [f"{fixture.replace('[', '[[]')} -- *pytest_engagelab*plugin.py:*", f"    {first_line}"],
        consecutive=True,
    )
    assert result.ret == 0


def test_the_plugins_copies_of_the_emulators_defaults_are_equal_to_them() -> None:
    """The plugin and the guard write out what they need of the emulator's defaults, so
    that start-up does not import it (bench row 3); they must not drift."""
    from urllib.parse import urlsplit

    from pytest_engagelab import _plugin_shared
    from pytest_engagelab.doors.guard import ENGAGELAB_HOSTS
    from pytest_engagelab.emulator import defaults

    written_out = (_plugin_shared.DEFAULT_BASE_URL, _plugin_shared.INI_OPTIONS, ENGAGELAB_HOSTS)
    options = tuple((option.name, option.kind, option.help) for option in defaults.INI_OPTIONS)
    hosts = (urlsplit(defaults.DEFAULT_BASE_URL).hostname, defaults.DEFAULT_SMPP_HOST)
    assert written_out == (defaults.DEFAULT_BASE_URL, options, hosts)


def test_help_shows_the_option_group_and_every_ini_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "EngageLab OTP emulator and cassettes (pytest-engagelab):",
            "  --engagelab-record-mode={none,once,new_episodes,all,rewrite}",
            "*cassette record mode: none (default: replay only)*",
            "  --engagelab-check-drift",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "  engagelab_dev_key (string):",
            "*dev key the emulator accepts (default test-dev-key)",
            "  engagelab_dev_secret (string):",
            "*dev secret the emulator accepts*",
            "  engagelab_base_url (string):",
            "*base URL the emulator serves, without /v1*",
            "  engagelab_strict_templates (bool):",
            "*answer 4001 for templates not registered*",
            "  engagelab_seed (int):*seed for codes and message ids*",
            "  engagelab_journal_limit (int):",
            "*messages the journal keeps*",
            "  engagelab_assert_all_fired (bool):",
            "*fail a test whose injected failures never fired*",
            "  engagelab_cassette_dir (string):",
            "*directory of the engagelab cassettes*",
            "  engagelab_record_mode (string):",
            "*default of --engagelab-record-mode*",
            "  engagelab_redact_recipients (bool):",
            "*replace phone numbers and e-mail addresses in cassettes*",
            "  engagelab_extra_secrets (linelist):",
            "*more secrets to scrub from cassettes*",
        ]
    )
    assert result.ret == 0


def test_markers_lists_the_plugins_markers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.engagelab(*, dev_key=..., dev_secret=..., base_url=..., "
            "strict_templates=False, seed=None, journal_limit=10000, *): configure the "
            "EngageLab emulator behind otp_mock, otp_client and otp_server for this test "
            "(keyword-only; *"
        ]
    )
    result.stdout.fnmatch_lines(
        ["@pytest.mark.engagelab_cassette(name=None): run this test on a vcrpy cassette*"]
    )
    assert result.ret == 0


def test_loading_and_using_the_plugin_does_not_import_vcrpy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def vcr_modules():
            return sorted(m for m in sys.modules if m == "vcr" or m.startswith("vcr."))

        def test_plugin_loaded_without_vcr(otp_mock, otp_client):
            otp_client.send("+6591234567", "login")
            otp_mock.assert_sent_once(to="+6591234567")
            assert "pytest_engagelab.plugin" in sys.modules
            assert vcr_modules() == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


# -- the marker ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "error"),
    [
        (
            "bogus=1",
            f"@pytest.mark.engagelab: unknown keyword(s) bogus; allowed: {ALLOWED_KEYWORDS}",
        ),
        (
            "'+6591234567'",
            "@pytest.mark.engagelab takes keyword arguments only, got ('+6591234567',); "
            f"allowed: {ALLOWED_KEYWORDS}",
        ),
        ('seed="x"', "@pytest.mark.engagelab: seed must be an integer >= 0 or None, not 'x'"),
        (
            'key_status="bogus"',
            "@pytest.mark.engagelab: key_status must be 'active', 'expired' or 'disabled', "
            "not 'bogus'",
        ),
        (
            'strict_templates="yes"',
            "@pytest.mark.engagelab: strict_templates must be True or False, not 'yes'",
        ),
        (
            "forbidden_endpoints=5",
            "@pytest.mark.engagelab: forbidden_endpoints must be a list of paths such as "
            "['/v1/verifications'], not 5",
        ),
        (
            'base_url="otp.example.test"',
            "@pytest.mark.engagelab: base_url must start with http:// or https://, "
            "not 'otp.example.test'",
        ),
    ],
)
def test_a_bad_marker_fails_setup_with_one_clear_line(
    pytester: pytest.Pytester, marker: str, error: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.engagelab({marker})
        def test_configured(otp_mock):
            pass
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*ERROR at setup of test_configured*", error], consecutive=True)
    result.stdout.no_fnmatch_line("*_settings.py*")
    result.stdout.no_fnmatch_line("*plugin.py*")
    result.stdout.no_fnmatch_line("*_plugin_*.py*")
    result.assert_outcomes(errors=1)


def test_module_class_and_function_markers_merge_and_the_closest_wins(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.engagelab(dev_key="module-key", seed=7)

        def test_module_marker(otp_mock):
            assert otp_mock.dev_key == "module-key"
            assert otp_mock.emulator.seed == 7

        @pytest.mark.engagelab(dev_key="class-key", strict_templates=True)
        class TestSignup:
            def test_class_marker(self, otp_mock):
                assert otp_mock.dev_key == "class-key"
                assert otp_mock.emulator.strict_templates is True
                assert otp_mock.emulator.seed == 7

            @pytest.mark.engagelab(dev_key="function-key")
            def test_function_marker(self, otp_mock, otp_client):
                assert otp_mock.dev_key == "function-key"
                assert otp_client.dev_key == "function-key"
                assert otp_mock.emulator.strict_templates is True
                assert otp_mock.emulator.seed == 7

        @pytest.mark.engagelab(dev_key="outer")
        @pytest.mark.engagelab(dev_key="inner")
        def test_the_decorator_nearest_the_function_wins(otp_mock):
            assert otp_mock.dev_key == "inner"
        """
    )
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=4)


# -- ini options and precedence -------------------------------------------------------------


def test_ini_options_configure_every_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        engagelab_dev_key = ini-key
        engagelab_dev_secret = ini-secret
        engagelab_base_url = https://otp.staging.test/
        engagelab_strict_templates = true
        engagelab_seed = 42
        engagelab_journal_limit = 3
        engagelab_assert_all_fired = false
        """
    )
    pytester.makepyfile(
        """
        import httpx
        import pytest
        from pytest_engagelab.errors import ErrorCode, NotFoundError

        def test_credentials(otp_mock, otp_client):
            assert (otp_mock.dev_key, otp_mock.dev_secret) == ("ini-key", "ini-secret")
            assert otp_mock.base_url == otp_client.base_url == "https://otp.staging.test"
            otp_mock.add_template("login")
            otp_client.send("+6591234567", "login")
            answer = httpx.post(
                f"{otp_mock.base_url}/v1/messages",
                json={"to": "+6591234567", "template": {"id": "login"}},
                auth=("test-dev-key", "test-dev-secret"),
            )
            assert answer.json()["code"] == ErrorCode.AUTH_FAILED

        def test_strict_templates(otp_client):
            with pytest.raises(NotFoundError) as raised:
                otp_client.send("+6591234567", "never-registered")
            assert raised.value.code is ErrorCode.NOT_FOUND

        SEEN = []

        @pytest.mark.parametrize("run", [1, 2])
        def test_seed_makes_codes_and_ids_repeat(otp_mock, otp_client, run):
            otp_mock.add_template("login")
            otp_client.send("+6591234567", "login")
            SEEN.append((otp_mock.sent[0].message_id, otp_mock.last_code("+6591234567")))
            assert SEEN[0] == SEEN[-1]

        def test_journal_limit(otp_mock, otp_client):
            otp_mock.add_template("login")
            for n in range(4):
                otp_client.send(f"+659123456{n}", "login")
            assert [m.to for m in otp_mock.sent] == ["+6591234561", "+6591234562", "+6591234563"]

        def test_assert_all_fired_off(otp_mock):
            otp_mock.fail_next(ErrorCode.INTERNAL_ERROR)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=6)


@pytest.mark.parametrize(
    ("ini_line", "error"),
    [
        (
            "engagelab_seed = abc",
            "ERROR: pytest-engagelab: ini option engagelab_seed must be an integer: "
            "invalid literal for int() with base 10: 'abc'",
        ),
        (
            "engagelab_strict_templates = maybe",
            "ERROR: pytest-engagelab: ini option engagelab_strict_templates must be a boolean "
            "(true or false): invalid truth value 'maybe'",
        ),
        (
            "engagelab_redact_recipients = perhaps",
            "ERROR: pytest-engagelab: ini option engagelab_redact_recipients must be a boolean "
            "(true or false): invalid truth value 'perhaps'",
        ),
        (
            "engagelab_journal_limit = -5",
            "ERROR: pytest-engagelab: ini option engagelab_journal_limit = -5: "
            "journal_limit must be an integer >= 1 or None, not -5",
        ),
        (
            "engagelab_base_url = otp.example.test",
            "ERROR: pytest-engagelab: ini option engagelab_base_url = 'otp.example.test': "
            "base_url must start with http:// or https://, not 'otp.example.test'",
        ),
    ],
)
def test_a_bad_ini_value_is_one_usage_error(
    pytester: pytest.Pytester, ini_line: str, error: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini_line}\n")
    pytester.makepyfile("def test_never_runs(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([error])
    assert [line for line in result.stderr.lines if line.strip()] == [error]
    assert "Traceback" not in result.stdout.str()


def test_precedence_defaults_then_ini_then_conftest_fixture_then_marker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(
        """
        [pytest]
        engagelab_dev_key = ini-key
        engagelab_seed = 5
        engagelab_journal_limit = 50
        """
    )
    pytester.makeconftest(
        """
        import dataclasses
        import pytest

        @pytest.fixture
        def engagelab_settings(engagelab_settings):
            return dataclasses.replace(engagelab_settings, dev_key="conftest-key", journal_limit=20)
        """
    )
    pytester.makepyfile(
        """
        import pytest
        from pytest_engagelab import DEFAULT_DEV_SECRET

        def test_without_marker(otp_mock):
            assert otp_mock.dev_secret == DEFAULT_DEV_SECRET   # built-in default
            assert otp_mock.emulator.strict_templates is False  # built-in default
            assert otp_mock.emulator.seed == 5                  # ini
            assert otp_mock.dev_key == "conftest-key"           # conftest beats ini
            assert otp_mock.emulator.journal.limit == 20        # conftest beats ini

        @pytest.mark.engagelab(dev_key="marker-key", strict_templates=True)
        def test_with_marker(otp_mock, otp_client):
            assert otp_mock.dev_key == "marker-key"             # marker beats conftest
            assert otp_client.dev_key == "marker-key"
            assert otp_mock.emulator.strict_templates is True   # marker beats default
            assert otp_mock.emulator.journal.limit == 20        # conftest, untouched
            assert otp_mock.emulator.seed == 5                  # ini, untouched
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_the_dev_secret_never_shows_in_a_failure_report(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        engagelab_dev_secret = s3cret-from-ini
        """
    )
    pytester.makepyfile(
        """
        import pytest

        def test_fails_with_everything_in_scope(engagelab_settings, otp_mock, otp_client):
            otp_client.send("+6591234567", "login")
            otp_mock.assert_sent(to="+6590000000")

        @pytest.mark.engagelab(dev_secret="s3cret-from-marker")
        def test_fails_in_setup_of_the_client(otp_mock, otp_client):
            assert otp_client.verify("123", "000000").verified
        """
    )
    result = pytester.runpytest("--showlocals", "-vv", "--tb=long")
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    assert "engagelab_settings = EngageLabSettings(dev_key='test-dev-key'" in output
    assert "s3cret-from-ini" not in output
    # The marker's secret shows only where the user wrote it: the test's own source.
    leaks = [line for line in result.stdout.lines if "s3cret-from-marker" in line]
    assert leaks == ['    @pytest.mark.engagelab(dev_secret="s3cret-from-marker")']
    for secret in ("s3cret-from-ini", "s3cret-from-marker"):
        token = base64.b64encode(f"test-dev-key:{secret}".encode()).decode()
        assert token not in output


# -- teardown: injected failures that never fired ------------------------------------------


def test_an_injected_failure_that_never_fired_fails_the_test_at_teardown(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_unfired="""
        import httpx
        import pytest
        from pytest_engagelab import errors
        from pytest_engagelab.errors import ErrorCode

        def test_forgot_to_send(otp_mock):
            otp_mock.fail_next(ErrorCode.INTERNAL_ERROR)
            otp_mock.fail_for("+6591234567", errors.blacklisted())

        def test_fired(otp_mock, otp_client):
            otp_mock.fail_next(httpx.ConnectTimeout("slow"))
            with pytest.raises(errors.RequestTimeout):
                otp_client.send("+6591234567", "login")

        @pytest.mark.engagelab(assert_all_fired=False)
        def test_check_turned_off(otp_mock):
            otp_mock.fail_next(ErrorCode.INTERNAL_ERROR)
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_forgot_to_send*",
            "otp_mock: 2 injected failure(s) never fired:",
            "  fail_next(ErrorCode.INTERNAL_ERROR, times=1) (fired 0 of 1)",
            "  fail_for('+6591234567', <Response [400]>) (fired 0 times)",
            "The code under test never made the request they were waiting for. Remove them, "
            "or turn this check off with @pytest.mark.engagelab(assert_all_fired=False).",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(
        ["ERROR test_unfired.py::test_forgot_to_send - Failed: otp_mock: 2 injected*"]
    )
    result.stdout.no_fnmatch_line("*plugin.py*")
    result.stdout.no_fnmatch_line("*_plugin_*.py*")
    result.assert_outcomes(passed=3, errors=1)


def test_a_bad_marker_is_reported_even_on_a_test_without_the_fixtures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.engagelab(sead=1)
        def test_typo():
            pass
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*@pytest.mark.engagelab: unknown keyword(s) sead; allowed: *"])
    result.assert_outcomes(errors=1)


def test_a_failing_test_is_not_reported_twice_for_its_unfired_injection(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_failing="""
        from pytest_engagelab.errors import ErrorCode

        def test_fails_before_sending(otp_mock):
            otp_mock.fail_next(ErrorCode.INTERNAL_ERROR)
            assert 1 == 2, "the test's own failure"
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*AssertionError: the test's own failure*"])
    result.stdout.no_fnmatch_line("*never fired*")
    result.assert_outcomes(failed=1, errors=0)


# -- what a failing assertion looks like -----------------------------------------------------


ASSERTION_SUITE = """
    import pytest

    pytestmark = pytest.mark.engagelab(seed=1)

    @pytest.fixture
    def one_login(otp_mock, otp_client):
        otp_client.send("+6590000001", "login", language="en")
        return otp_mock

    def test_assert_sent(one_login):
        one_login.assert_sent(to="+6590000002", template_id="login")

    def test_assert_sent_once(one_login):
        one_login.assert_sent_once(template_id="signup")

    def test_assert_not_sent(one_login):
        one_login.assert_not_sent(to="+6590000001")

    def test_assert_sent_count(one_login):
        one_login.assert_sent_count(2, to="+6590000001")

    def test_last_code(one_login):
        one_login.last_code("+6590000009")

    def test_last_code_nothing_sent(otp_mock):
        otp_mock.last_code("+6590000009")

    def test_assert_sent_nothing_sent(otp_mock):
        otp_mock.assert_sent(to="+6590000001")

    def test_unknown_field(one_login):
        one_login.assert_sent(phone="+6590000001")
"""

SENT_LINE = (
    "E         1. to='+6590000001', template_id='login', language='en', params={} "
    "(/v1/messages, send_channel='sms', message_id='*')"
)


@pytest.mark.parametrize(
    ("test", "lines"),
    [
        (
            "test_assert_sent",
            [
                '>       one_login.assert_sent(to="+6590000002", template_id="login")',
                "E       AssertionError: assert_sent: no message matched.",
                "E       Expected: to='+6590000002', template_id='login'",
                "E       Sent (1):",
                SENT_LINE,
                "E       Closest: #1, which differs in",
                "E         to: expected '+6590000002', got '+6590000001'",
            ],
        ),
        (
            "test_assert_sent_once",
            [
                "E       AssertionError: assert_sent_once: expected 1 matching message(s), "
                "found 0.",
                "E       Expected: template_id='signup'",
                "E       Sent (1):",
                SENT_LINE,
                "E       Closest: #1, which differs in",
                "E         template_id: expected 'signup', got 'login'",
            ],
        ),
        (
            "test_assert_not_sent",
            [
                "E       AssertionError: assert_not_sent: expected 0 matching message(s), found 1.",
                "E       Expected: to='+6590000001'",
                "E       Sent (1):",
                SENT_LINE,
            ],
        ),
        (
            "test_assert_sent_count",
            [
                "E       AssertionError: assert_sent_count: expected 2 matching message(s), "
                "found 1.",
                "E       Expected: to='+6590000001'",
                "E       Sent (1):",
                SENT_LINE,
            ],
        ),
        (
            "test_last_code",
            [
                "E       AssertionError: last_code('+6590000009'): no code was delivered to "
                "it; sent to: '+6590000001'"
            ],
        ),
        (
            "test_last_code_nothing_sent",
            [
                "E       AssertionError: last_code('+6590000009'): no code was delivered to "
                "it; sent to: nobody"
            ],
        ),
        (
            "test_assert_sent_nothing_sent",
            [
                "E       AssertionError: assert_sent: no message matched.",
                "E       Expected: to='+6590000001'",
                "E       Sent: nothing",
            ],
        ),
        (
            "test_unknown_field",
            [
                "E       TypeError: assert_sent() got unknown field(s) phone; match on: "
                "endpoint, language, message_id, params, params_include, send_channel, "
                "template_id, to"
            ],
        ),
    ],
)
def test_assertion_failures_read_as_the_user_expects(
    pytester: pytest.Pytester, test: str, lines: list[str]
) -> None:
    pytester.makepyfile(test_assertions=ASSERTION_SUITE)
    result = pytester.runpytest(f"test_assertions.py::{test}")
    result.stdout.fnmatch_lines(lines, consecutive=True)
    result.stdout.fnmatch_lines(["test_assertions.py:*: *Error"])
    # __tracebackhide__: the report stops at the user's line, not in the helpers.
    result.stdout.no_fnmatch_line("*_controls.py*")
    result.stdout.no_fnmatch_line("*_journal.py*")
    result.assert_outcomes(failed=1)


# -- the clients ------------------------------------------------------------------------


def test_otp_client_and_otp_async_client_talk_to_the_mock(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        def test_sync_round_trip(otp_mock, otp_client):
            assert otp_client.base_url == otp_mock.base_url
            assert otp_client.dev_key == otp_mock.dev_key
            sent = otp_client.send("+6591234567", "login")
            code = otp_mock.last_code("+6591234567")
            assert otp_client.verify(sent.message_id, code).verified is True

        @pytest.mark.anyio
        async def test_async_round_trip(otp_mock, otp_async_client):
            sent = await otp_async_client.send("+6591234567", "login")
            code = otp_mock.last_code("+6591234567")
            assert (await otp_async_client.verify(sent.message_id, code)).verified is True

        @pytest.mark.engagelab(base_url="https://otp.example.test/api", dev_key="other-key")
        def test_sync_follows_the_marker(otp_mock, otp_client):
            assert otp_client.base_url == "https://otp.example.test/api"
            otp_client.send("+6591234567", "login")
            sent = otp_mock.assert_sent_once(to="+6591234567")
            assert str(sent.request.url) == "https://otp.example.test/api/v1/messages"

        @pytest.mark.engagelab(base_url="https://otp.example.test/api", dev_key="other-key")
        @pytest.mark.anyio
        async def test_async_follows_the_marker(otp_mock, otp_async_client):
            assert otp_async_client.dev_key == "other-key"
            await otp_async_client.send("+6591234567", "login")
            sent = otp_mock.assert_sent_once(to="+6591234567")
            assert str(sent.request.url) == "https://otp.example.test/api/v1/messages"
        """
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(passed=4)


# -- isolation and other mocks -------------------------------------------------------------


def test_nothing_stays_patched_after_a_test_with_otp_mock(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_patch="""
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        import httpx
        import pytest
        import respx.mocks

        class Hello(BaseHTTPRequestHandler):
            def do_POST(self):
                self.send_response(200)
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"hello")

            def log_message(self, *args):
                pass

        SERVER = HTTPServer(("127.0.0.1", 0), Hello)
        URL = f"http://127.0.0.1:{SERVER.server_address[1]}"

        @pytest.fixture(scope="module", autouse=True)
        def serve():
            thread = threading.Thread(target=SERVER.serve_forever, args=(0.05,), daemon=True)
            thread.start()
            yield
            SERVER.shutdown()
            SERVER.server_close()
            thread.join()

        @pytest.mark.engagelab(base_url=URL)
        def test_the_emulator_answers_during_the_test(otp_mock):
            answer = httpx.post(f"{URL}/v1/messages", json={})
            assert answer.json()["code"] == 2001

        @pytest.mark.engagelab(base_url=URL)
        def test_even_when_the_test_fails(otp_mock):
            raise RuntimeError("boom")

        def test_the_real_server_answers_afterwards():
            assert respx.mocks.HTTPXMocker.routers == []
            assert httpx.post(f"{URL}/v1/messages", json={}).text == "hello"
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["FAILED test_patch.py::test_even_when_the_test_fails - RuntimeError: boom"]
    )


def test_otp_mock_works_beside_respx_mock_for_another_host(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import httpx

        def test_mock_first(otp_mock, respx_mock, otp_client):
            respx_mock.get("https://api.other.test/ping").respond(json={"pong": True})
            otp_client.send("+6591234567", "login")
            assert httpx.get("https://api.other.test/ping").json() == {"pong": True}
            otp_mock.assert_sent_once(to="+6591234567")
            assert respx_mock.calls.call_count == 1

        def test_respx_first(respx_mock, otp_mock, otp_client):
            respx_mock.get("https://api.other.test/ping").respond(json={"pong": True})
            otp_client.send("+6591234567", "login")
            assert httpx.get("https://api.other.test/ping").json() == {"pong": True}
            otp_mock.assert_sent_once(to="+6591234567")
            assert respx_mock.calls.call_count == 1
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_otp_mock_works_beside_pytest_httpx_for_another_host(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_httpx")
    pytester.makepyfile(
        """
        import httpx

        def test_mock_first(otp_mock, httpx_mock, otp_client):
            httpx_mock.add_response(url="https://api.other.test/ping", json={"pong": True})
            otp_client.send("+6591234567", "login")
            assert httpx.get("https://api.other.test/ping").json() == {"pong": True}
            otp_mock.assert_sent_once(to="+6591234567")

        def test_httpx_mock_first(httpx_mock, otp_mock, otp_client):
            httpx_mock.add_response(url="https://api.other.test/ping", json={"pong": True})
            otp_client.send("+6591234567", "login")
            assert httpx.get("https://api.other.test/ping").json() == {"pong": True}
            otp_mock.assert_sent_once(to="+6591234567")
            assert len(httpx_mock.get_requests()) == 1
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


# -- the example suite ------------------------------------------------------------------


def test_the_example_suite_passes(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(str(EXAMPLES), "-p", "no:cacheprovider", "-q")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 12, result.stdout.str()
    assert set(outcomes) == {"passed"}, result.stdout.str()
    assert result.ret == 0
