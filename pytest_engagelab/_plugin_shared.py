"""What the plugin needs from start-up on: options, ini parsing, settings, the guard's
set-up, the plan of collection, stash keys and the simple session hooks.

:mod:`pytest_engagelab.plugin` is thin on purpose: pytest scans every name of a plugin
module for hooks and fixtures at each start-up, and reads the module through its
assertion rewriter, so the plugin holds only its hooks and fixtures, each calling in
here or, for the work of a test that uses the kit, into
:mod:`pytest_engagelab._plugin_impl` (imported by the first fixture of the kit).

Nothing here imports the emulator, httpx, respx or vcrpy: the ini options and the
default base URL are written out below (``tests/test_plugin.py`` keeps them equal to
:mod:`pytest_engagelab.emulator.defaults`), and the settings and the cassettes' settings
are read on first use, or at once when an option of theirs is set (bench row 3).

Why this module is long: it is the start-up half of the plugin, and the options with
their help texts, the ini parsing, the guard's set-up and the collection plan all read
the same configuration; split further, each part would be one more module that pytest
loads through its assertion rewriter at every start-up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final, Literal

import pytest

from pytest_engagelab.doors import guard as _guard

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_engagelab.cassettes.recorder import ActiveCassette
    from pytest_engagelab.cassettes.settings import CassetteSettings
    from pytest_engagelab.doors.controls import EmulatorControls
    from pytest_engagelab.doors.server import OTPServer
    from pytest_engagelab.emulator.settings import EngageLabSettings

# -- stash keys -------------------------------------------------------------------------------
# Typed by annotation, not by ``StashKey[T]()``: subscripting a generic class at run time
# costs about 40 function calls each, at every start-up (bench row 3).
SETTINGS_KEY: pytest.StashKey[EngageLabSettings] = pytest.StashKey()
CASSETTES_KEY: pytest.StashKey[CassetteSettings] = pytest.StashKey()
CALL_REPORT_KEY: pytest.StashKey[pytest.TestReport] = pytest.StashKey()
ACTIVE_KEY: pytest.StashKey[ActiveCassette] = pytest.StashKey()
#: Under xdist: the tests that share a cassette with another, and the message for each.
SHARED_KEY: pytest.StashKey[dict[str, str]] = pytest.StashKey()
GUARD_KEY: pytest.StashKey[_guard.Guard] = pytest.StashKey()
COUNTS_KEY: pytest.StashKey[_guard.Counts] = pytest.StashKey()
CONTROLS_KEY: pytest.StashKey[list[EmulatorControls]] = pytest.StashKey()
SECTION_KEY: pytest.StashKey[bool] = pytest.StashKey()
SESSION_SERVER_KEY: pytest.StashKey[OTPServer] = pytest.StashKey()
WATCHING_KEY: pytest.StashKey[bool] = pytest.StashKey()

# -- what the emulator defines, written out so that start-up does not import it ------------------

#: ``pytest_engagelab.emulator.defaults.DEFAULT_BASE_URL``.
DEFAULT_BASE_URL: Final = "https://otp.api.engagelab.cc"
#: ``(name, kind, help)`` of each ``pytest_engagelab.emulator.defaults.INI_OPTIONS``.
INI_OPTIONS: Final = (
    ("engagelab_dev_key", "string", "dev key the emulator accepts (default test-dev-key)"),
    ("engagelab_dev_secret", "string", "dev secret the emulator accepts (default test-dev-secret)"),
    (
        "engagelab_base_url",
        "string",
        "base URL the emulator serves, without /v1 (default https://otp.api.engagelab.cc)",
    ),
    (
        "engagelab_strict_templates",
        "bool",
        "answer 4001 for templates not registered with add_template (default false)",
    ),
    (
        "engagelab_seed",
        "int",
        "seed for codes and message ids, for reproducible runs (default: none)",
    ),
    (
        "engagelab_journal_limit",
        "int",
        "messages the journal keeps; older ones are dropped (default 10000; 0 = no limit)",
    ),
    (
        "engagelab_assert_all_fired",
        "bool",
        "fail a test whose injected failures never fired (default true)",
    ),
    (
        "engagelab_phone_validation",
        "string",
        "e164 (default): phone numbers need the E.164 shape; strict: also valid for their "
        "region, by phonenumbers (pip install 'pytest-engagelab[phonenumbers]')",
    ),
    (
        "engagelab_template_review",
        "string",
        "auto (default): templates created through the API are approved at once; manual: "
        "pending until the test calls review_template",
    ),
)
#: ``pytest_engagelab.cassettes.settings.RECORD_MODES``.
RECORD_MODES: Final = ("none", "once", "new_episodes", "all", "rewrite")
#: The variables the cassette settings read (``pytest_engagelab.cassettes.credentials``).
CASSETTE_ENVIRON: Final = ("ENGAGELAB_DEV_KEY", "ENGAGELAB_DEV_SECRET", "ENGAGELAB_BASE_URL")

# -- markers ------------------------------------------------------------------------------------

_ENGAGELAB_MARKER = (
    "engagelab(*, dev_key=..., dev_secret=..., base_url=..., strict_templates=False, "
    "seed=None, journal_limit=10000, assert_all_fired=True, key_status='active', "
    "forbidden_endpoints=(), rate_limit=True, max_verify_attempts=None): configure the "
    "EngageLab emulator behind otp_mock, otp_client and otp_server for this test (keyword-only; "
    "overrides the engagelab_* ini options)."
)
_CASSETTE_MARKER = (
    "engagelab_cassette(name=None): run this test on a vcrpy cassette (YAML, under the ini "
    "option engagelab_cassette_dir): otp_client, otp_async_client and any httpx request go "
    "through it to the real EngageLab base URL; --engagelab-record-mode says whether it records."
)
_LIVE_MARKER = (
    "engagelab_live: let this test reach the real EngageLab (otp.api.engagelab.cc, the SMPP "
    "host, the configured base URL): without it, the pytest-engagelab guard stops every "
    "attempt before a name lookup or connection."
)

# -- options ------------------------------------------------------------------------------------


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("engagelab", "EngageLab OTP emulator and cassettes (pytest-engagelab)")
    for name, kind, text in INI_OPTIONS:  # typed, so `pytest --help` says (bool), (int), (string)
        parser.addini(name, help=text, type=_ini_type(kind), default=None)
    # -- cassettes -----------------------------------------------------------------------------
    group.addoption(
        "--engagelab-record-mode",
        dest="engagelab_record_mode",
        choices=RECORD_MODES,
        default=None,
        help="cassette record mode: none (default: replay only), once, new_episodes, all, "
        "rewrite (record the cassette anew); recording needs ENGAGELAB_DEV_KEY and "
        "ENGAGELAB_DEV_SECRET",
    )
    group.addoption(
        "--engagelab-check-drift",
        dest="engagelab_check_drift",
        action="store_true",
        default=False,
        help="instead of the tests, replay every interaction of the cassette directory through "
        "the emulator and fail each one whose answer differs (status, error code, body shape)",
    )
    parser.addini(
        "engagelab_cassette_dir",
        help="directory of the engagelab cassettes, relative to the rootdir (default cassettes)",
        type="string",
        default="cassettes",
    )
    parser.addini(
        "engagelab_record_mode",
        help="default of --engagelab-record-mode (default none: replay only)",
        type="string",
        default="",
    )
    parser.addini(
        "engagelab_redact_recipients",
        help="replace phone numbers and e-mail addresses in cassettes with stable placeholders "
        "(default false)",
        type="bool",
        default=False,
    )
    parser.addini(
        "engagelab_extra_secrets",
        help="more secrets to scrub from cassettes, one per line; $NAME means the value of the "
        "environment variable NAME",
        type="linelist",
        default=[],
    )
    parser.addini(
        "engagelab_cassette_max_age",
        help="warn when a replayed cassette was recorded longer ago than this (90d, 12w, 36h; "
        "default off)",
        type="string",
        default="",
    )
    group.addoption(
        "--engagelab-review",
        dest="engagelab_review",
        metavar="PATH",
        default=None,
        help="also write the review of re-recorded cassettes (what changed in EngageLab's "
        "answers) to PATH as JSON",
    )
    # -- guard ---------------------------------------------------------------------------------
    group.addoption(
        "--engagelab-guard",
        dest="engagelab_guard",
        choices=("on", "off"),
        default=None,
        help="on (default): stop every attempt to reach EngageLab from a test not marked "
        "engagelab_live; off: let them through for this run (real OTPs, real costs)",
    )
    parser.addini(
        "engagelab_guard",
        help="stop every attempt to reach EngageLab from a test not marked engagelab_live "
        "(default true; false lets real OTPs out)",
        type="bool",
        default=True,
    )
    parser.addini(
        "engagelab_guard_hosts",
        help="more hosts the guard stops, one per line: a host name, or *.domain for every "
        "subdomain",
        type="linelist",
        default=[],
    )


def _ini_type(kind: str) -> Literal["string", "bool", "int"]:
    """pytest's ini type for an ``engagelab_*`` option: ``int`` exists from pytest 8.4 on."""
    if kind == "bool":
        return "bool"
    if kind == "int" and pytest.version_tuple >= (8, 4):
        return "int"
    return "string"


_INI_KINDS: Final = {
    **{name: kind for name, kind, _ in INI_OPTIONS},
    "engagelab_redact_recipients": "bool",
    "engagelab_guard": "bool",
}
_WANTED: Final = {"bool": "a boolean (true or false)", "int": "an integer", "string": "a string"}


def getini(config: pytest.Config, name: str) -> Any:
    """``config.getini(name)``, with pytest's complaint about a value of the wrong type
    turned into one line that names the option and what it takes."""
    try:
        return config.getini(name)
    except (ValueError, TypeError, pytest.UsageError) as error:  # pytest < 9: ValueError
        wanted = _WANTED[_INI_KINDS.get(name, "string")]
        raise pytest.UsageError(
            f"pytest-engagelab: ini option {name} must be {wanted}: {error}"
        ) from None


def configure(config: pytest.Config, on_stop: Callable[[], None]) -> bool:
    """Markers, the settings when an option of theirs is set, and the guard, installed
    (``on_stop`` is called after each refusal).  Whether this process reviews what the
    cassettes record (the plugin then registers the review)."""
    config.addinivalue_line("markers", _ENGAGELAB_MARKER)
    base_url = DEFAULT_BASE_URL
    if any(_ini_given(getini(config, name)) for name, _, _ in INI_OPTIONS):
        base_url = settings(config).base_url  # checked now: a mistake stops the run
    # -- cassettes -----------------------------------------------------------------------------
    config.addinivalue_line("markers", _CASSETTE_MARKER)
    reviews = False
    if _cassettes_configured(config):  # checked now: a mistake stops the run before any test
        cassettes = cassette_settings(config)
        wanted = cassettes.records or config.getoption("engagelab_review", None)
        reviews = bool(wanted) and not hasattr(config, "workerinput")  # xdist: the controller
    # -- guard ---------------------------------------------------------------------------------
    config.addinivalue_line("markers", _LIVE_MARKER)
    try:
        guard = _guard.guard_from_options(
            option=config.getoption("engagelab_guard", None),
            ini="true" if getini(config, "engagelab_guard") else "false",
            hosts=config.getini("engagelab_guard_hosts"),
            base_urls=(base_url, os.environ.get("ENGAGELAB_BASE_URL", "")),
        )
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    guard.on_stop = on_stop  # a refusal is reported with its test
    config.stash[GUARD_KEY] = guard
    config.stash[COUNTS_KEY] = _guard.Counts()
    if guard.enabled:
        _guard.install(guard)
        config.add_cleanup(lambda: _guard.uninstall(guard))
    return reviews


def _ini_given(value: Any) -> bool:
    """Whether an ``engagelab_*`` ini value is set (as ``settings_from_ini`` reads them)."""
    return not (value is None or value == "" or value == [])


def settings(config: pytest.Config) -> EngageLabSettings:
    """The session's emulator settings, from the ``engagelab_*`` ini options.

    Built on first use, so that a suite that never uses the kit does not import them
    (start-up cost, bench row 3); when an ini option is set, :func:`configure`
    builds them at once, and a mistake stops the run before any test.
    """
    found = config.stash.get(SETTINGS_KEY, None)
    if found is not None:
        return found
    from pytest_engagelab.emulator.settings import (
        EngageLabSettings,
        SettingsError,
        settings_from_ini,
    )

    def read(name: str) -> Any:
        return getini(config, name)

    try:
        built = settings_from_ini(read, EngageLabSettings())
    except SettingsError as error:
        raise pytest.UsageError(f"pytest-engagelab: {error}") from None
    config.stash[SETTINGS_KEY] = built
    return built


def _cassettes_configured(config: pytest.Config) -> bool:
    """Whether any cassette option or variable is set.  When none is, the settings are the
    defaults, which cannot be wrong: they are read on first use, so a suite that never
    uses a cassette does not import them (start-up cost, bench row 3)."""
    return bool(
        config.getoption("engagelab_record_mode", None)
        or config.getoption("engagelab_check_drift", False)
        or config.getoption("engagelab_review", None)
        or str(config.getini("engagelab_record_mode")).strip()
        or getini(config, "engagelab_redact_recipients")
        or config.getini("engagelab_extra_secrets")
        or str(config.getini("engagelab_cassette_max_age")).strip()
        or any(name in os.environ for name in CASSETTE_ENVIRON)
    )


def cassette_settings(config: pytest.Config) -> CassetteSettings:
    """The session's cassette settings, read and checked once."""
    found = config.stash.get(CASSETTES_KEY, None)
    if found is not None:
        return found
    from pytest_engagelab.cassettes.settings import cassette_settings as read

    try:
        built = read(
            rootdir=config.rootpath,
            directory=str(config.getini("engagelab_cassette_dir")),
            record_mode=config.getoption("engagelab_record_mode", None),
            ini_record_mode=str(config.getini("engagelab_record_mode")),
            redact="true" if getini(config, "engagelab_redact_recipients") else "false",
            extra_secrets=config.getini("engagelab_extra_secrets"),
            environ=os.environ,
            default_base_url=settings(config).base_url,
            max_age=str(config.getini("engagelab_cassette_max_age")),
        )
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[CASSETTES_KEY] = built
    return built


# -- collection: what a test of the kit costs, nothing for the others ---------------------------
# No autouse fixture and no per-test hook at load: at collection, the fixtures below are
# added to the tests that carry a marker of ours or use otp_server_session, and the report
# hook is registered by the first fixture of ours that needs it.  A suite that never uses
# the kit runs the same function calls per test as with ``-p no:engagelab``.

_OUR_MARKERS: Final = frozenset({"engagelab", "engagelab_cassette", "engagelab_live"})
#: The fixtures a marked test gets first, each with the marker that asks for it.
_FIRST: Final = (
    ("_engagelab_live", "engagelab_live"),
    ("_engagelab_marker_check", "engagelab"),
    ("engagelab_cassette", "engagelab_cassette"),
)
#: The fixture that resets ``otp_server_session`` before each test that uses it.
PER_TEST_RESET: Final = "_engagelab_session_server_per_test"


def collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> bool:
    """Give the tests of the kit their fixtures (:func:`plan`); whether one got a private
    fixture (the plugin then registers them).  Recording: two tests on one cassette would
    overwrite each other; refuse at once.

    Under xdist a worker cannot stop the run with a usage error (the controller
    shows an INTERNALERROR), so there each such test fails at setup with the message.
    """
    private = plan(items)
    cassettes = config.stash.get(CASSETTES_KEY, None)  # read at configure when recording
    if cassettes is None or not cassettes.records:
        return private
    from pytest_engagelab.cassettes.files import shared_cassettes

    problems = shared_cassettes(
        cassettes.directory, config.rootpath, items, secrets=cassettes.secrets
    )
    if not problems:
        return private
    if hasattr(config, "workerinput"):
        config.stash[SHARED_KEY] = problems
        return private
    raise pytest.UsageError(next(iter(problems.values())))


def plan(items: list[pytest.Item]) -> bool:
    """Give each test the fixtures its markers and ``otp_server_session`` need; whether
    any test got one of the private ones (:mod:`pytest_engagelab._plugin_fixtures`).

    Cheap for a test without them: an attribute read and two membership tests
    (markers of a module or class are looked up once per module or class).
    """
    parent: object = None
    inherited: frozenset[str] = frozenset()
    private = False
    for item in items:
        if item.parent is not parent:
            parent = item.parent
            inherited = _markers_above(item)
        try:
            names = item.fixturenames  # type: ignore[attr-defined]
        except AttributeError:  # not a test function (another plugin's item): nothing to add
            continue
        marks = inherited
        if item.own_markers:
            marks = marks | {mark.name for mark in item.own_markers}
        if marks & _OUR_MARKERS:
            # First, as an autouse fixture would have run: the marker is checked, and the
            # cassette active, before the test's own fixtures are set up.
            first = [name for name, marker in _FIRST if marker in marks]
            if names[: len(first)] != first:
                names[:] = [*first, *(name for name in names if name not in first)]
            private = private or first != ["engagelab_cassette"]
        if "otp_server_session" in names and PER_TEST_RESET not in names:
            # Right after the session server: reset before the test's own fixtures use it.
            names.insert(names.index("otp_server_session") + 1, PER_TEST_RESET)
            private = True
    return private


def _markers_above(item: pytest.Item) -> frozenset[str]:
    """The names of our markers on the item's module, class and other parents."""
    found: set[str] = set()
    node = item.parent
    while node is not None:
        found.update(mark.name for mark in node.own_markers)
        node = node.parent
    return frozenset(found & _OUR_MARKERS)


def collection_finish() -> None:
    """The guard covers asyncio's ``loop.getaddrinfo`` once asyncio is imported."""
    _guard.patch_asyncio()


def collection(session: pytest.Session) -> bool | None:
    """Under ``--engagelab-check-drift``, the items are the recorded interactions."""
    if not session.config.getoption("engagelab_check_drift", False):
        return None
    from pytest_engagelab.cassettes.drift import collect_drift_items

    items = collect_drift_items(session, cassette_settings(session.config).directory)
    session.items = items
    hook = session.config.hook
    hook.pytest_collectreport(report=pytest.CollectReport("", "passed", None, list(items)))
    hook.pytest_collection_modifyitems(session=session, config=session.config, items=items)
    hook.pytest_collection_finish(session=session)
    session.testscollected = len(items)
    return True


# -- the session's header and summary -----------------------------------------------------------


def report_header(config: pytest.Config) -> list[str]:
    """Nobody records by accident: the header says so when cassettes record."""
    lines = []
    cassettes = config.stash.get(CASSETTES_KEY, None)
    if cassettes is not None and cassettes.records:
        base_url = cassettes.recording.base_url if cassettes.recording else "EngageLab"
        host = _guard.host_of(base_url) or base_url
        lines.append(
            f"engagelab: recording cassettes against {host} (record mode {cassettes.record_mode}):"
            " requests a cassette lacks go to the real endpoint"
        )
    if not config.stash[GUARD_KEY].enabled:
        lines.append("engagelab: guard off: tests can reach the real EngageLab")
    return lines


def terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    counts = config.stash[COUNTS_KEY]
    counts.stopped += config.stash[GUARD_KEY].stopped
    config.stash[GUARD_KEY].stopped = 0
    cassettes = config.stash.get(CASSETTES_KEY, None)
    mode = cassettes.record_mode if cassettes is not None else "none"
    if any(counts.as_dict().values()) or mode != "none":
        terminalreporter.write_line(counts.line(mode))


def sessionfinish(session: pytest.Session) -> None:
    """Under xdist, a worker hands its counts to the controller's summary line."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        counts = session.config.stash[COUNTS_KEY]
        counts.stopped += session.config.stash[GUARD_KEY].stopped
        session.config.stash[GUARD_KEY].stopped = 0
        output["engagelab_counts"] = counts.as_dict()


def testnodedown(node: Any) -> None:
    output = getattr(node, "workeroutput", None) or {}
    counts = output.get("engagelab_counts")
    if isinstance(counts, dict):
        node.config.stash[COUNTS_KEY].add(counts)
