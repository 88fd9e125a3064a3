"""``python -m pytest_engagelab serve``: the emulator on a real socket, from the command line.

For manual testing and for other languages' suites.  Prints one line to stdout
once it listens (``pytest-engagelab emulator listening on http://HOST:PORT``),
then one line per request to stderr (never headers, bodies or query strings),
and stops cleanly on Ctrl-C (SIGINT) or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from pytest_engagelab.doors.server import (
    CONTROL_PREFIX,
    DEFAULT_MAX_BODY,
    DEFAULT_READ_TIMEOUT,
    OTPServer,
    TemplateSpecError,
    load_templates,
)
from pytest_engagelab.emulator.clock import SEEDED_EPOCH, Clock
from pytest_engagelab.emulator.core import DEFAULT_DEV_KEY, DEFAULT_DEV_SECRET, Emulator

#: How the user started it, for usage and error lines: ``python -m pytest_engagelab`` or the
#: console script ``engagelab-emulator`` (``[project.scripts]``), which runs :func:`main`.
_PROG = (
    "engagelab-emulator"
    if Path(sys.argv[0]).name.startswith("engagelab-emulator")
    else "python -m pytest_engagelab"
)


def _bounded(low: int, high: int | None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``, or argparse's one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            upper = f" to {high}" if high is not None else " or more"
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low}{upper}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="pytest-engagelab: EngageLab OTP API emulator tools."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve the emulator over HTTP",
        description=(
            "Serve the EngageLab OTP API emulator over HTTP, with a JSON control API under "
            f"{CONTROL_PREFIX}. Its clock follows the wall clock (POST {CONTROL_PREFIX}advance "
            "moves it on). Stop with Ctrl-C."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument(
        "--port",
        type=_bounded(0, 65535),
        default=0,
        help="port to bind, 0 to 65535 (0, the default: a free port)",
    )
    serve.add_argument(
        "--seed",
        type=_bounded(0, None),
        default=None,
        help="seed codes and message ids (reproducible runs); an integer >= 0",
    )
    serve.add_argument(
        "--templates",
        metavar="FILE",
        default=None,
        help="JSON file: a list of templates, each either add_template keywords "
        '({"template_id": "login", "strategy": "whatsapp|sms", "ttl": 300}) or a '
        "POST /v1/template-configs definition (with send_channel_strategy)",
    )
    serve.add_argument("--dev-key", default=DEFAULT_DEV_KEY, help="dev key to accept")
    serve.add_argument("--dev-secret", default=DEFAULT_DEV_SECRET, help="dev secret to accept")
    serve.add_argument(
        "--strict-templates",
        action="store_true",
        help="answer 4001 for templates that were not registered",
    )
    serve.add_argument(
        "--max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        help=f"largest request body in bytes ({DEFAULT_MAX_BODY}); larger is answered 413",
    )
    serve.add_argument(
        "--read-timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT,
        help=f"seconds to wait for the rest of a started request ({DEFAULT_READ_TIMEOUT:g})",
    )
    serve.add_argument("--quiet", action="store_true", help="no line per request")
    # -- SMPP door ---------------------------------------------------------------------------
    serve.add_argument(
        "--smpp-port",
        type=_bounded(0, 65535),
        default=None,
        help="also serve EngageLab's SMPP interface on this port (0: a free one), beside the "
        "HTTP port, one emulator behind both; needs pip install pytest-engagelab[smpp]",
    )
    serve.add_argument(
        "--smpp-system-id", default=None, help="SMPP system_id to accept (test-smpp)"
    )
    serve.add_argument("--smpp-password", default=None, help="SMPP password to accept (test-pw)")
    _add_cassettes_commands(commands)
    return parser


def _add_cassettes_commands(commands: Any) -> None:
    """``cassettes diff OLD NEW``: the review of a re-record, for a pull request."""
    cassettes = commands.add_parser("cassettes", help="cassette tools (diff)")
    tools = cassettes.add_subparsers(dest="tool", metavar="TOOL")
    diff = tools.add_parser(
        "diff",
        help="what changed in EngageLab's answers between two recordings",
        description=(
            "Print what changed in EngageLab's answers from the cassettes OLD to the cassettes "
            "NEW (two files, or two directories whose cassettes are paired by path, e.g. a git "
            "worktree of main and your branch): status, error code, fields and their JSON "
            "types, send_channel. Exit status 0 when no answer changed, 1 when one did, "
            "2 when a cassette cannot be read."
        ),
    )
    diff.add_argument("old", metavar="OLD", help="the cassette file or directory before")
    diff.add_argument("new", metavar="NEW", help="the cassette file or directory after")
    diff.add_argument(
        "--json", metavar="PATH", default=None, help="also write the review as JSON to PATH"
    )


def _cassettes(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pytest_engagelab.cassettes.reports import diff_paths, review_json, review_lines

    if args.tool != "diff":
        print(f"{_PROG} cassettes: name a tool: diff OLD NEW (see --help)", file=sys.stderr)
        return 2
    old, new = Path(args.old), Path(args.new)
    missing = [str(p) for p in (old, new) if not p.exists()]
    if len(missing) == 2:
        print(
            f"{_PROG} cassettes diff: no such file or directory: {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    try:
        reviews = diff_paths(old, new)
    except ValueError as error:
        print(f"{_PROG} cassettes diff: {error}", file=sys.stderr)
        return 2
    for line in review_lines(reviews):
        print(line)
    if args.json is not None:
        Path(args.json).write_text(review_json(reviews), encoding="utf-8")
    if any(review.status == "unreadable" for review in reviews):
        return 2
    return 1 if any(review.status in ("changed", "removed") for review in reviews) else 0


class _Log:
    """One line per request to stderr, with a UTC timestamp; safe from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            sys.stderr.write(f"{stamp} {line}\n")
            sys.stderr.flush()


def _serve(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"{_PROG} serve: {message}", file=sys.stderr)
        return 2

    try:
        emulator = Emulator(
            dev_key=args.dev_key,
            dev_secret=args.dev_secret,
            seed=args.seed,
            strict_templates=args.strict_templates,
            clock=Clock(SEEDED_EPOCH if args.seed is not None else None, frozen=False),
        )
        server = OTPServer(
            emulator,
            host=args.host,
            port=args.port,
            max_body=args.max_body,
            read_timeout=args.read_timeout,
            log=None if args.quiet else _Log(),
        )
    except ValueError as error:
        return fail(str(error))
    if args.templates is not None:
        try:
            with open(args.templates, encoding="utf-8") as file:
                spec = json.load(file)
            load_templates(server, spec)
        except OSError as error:
            return fail(f"--templates {args.templates}: {error.strerror or error}")
        except ValueError as error:  # bad JSON, or TemplateSpecError
            kind = "" if isinstance(error, TemplateSpecError) else "not valid JSON: "
            return fail(f"--templates {args.templates}: {kind}{error}")
    smpp: Any = None
    if args.smpp_port is not None:  # -- SMPP door --
        from pytest_engagelab.doors import smpp as door

        try:
            smpp = door.OTPSMPPServer(
                emulator,
                host=args.host,
                port=args.smpp_port,
                system_id=args.smpp_system_id or door.DEFAULT_SYSTEM_ID,
                password=args.smpp_password or door.DEFAULT_PASSWORD,
                log=None if args.quiet else _Log(),
            )
        except (ValueError, door.SMPPUnavailable) as error:
            return fail(f"--smpp-port: {error}")
    try:
        server.start()
        if smpp is not None:
            smpp.start()
    except OSError as error:
        server.stop()
        return fail(str(error.strerror or error))  # "OTPServer cannot listen on HOST:PORT: ..."

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    key = args.dev_key if args.dev_key == DEFAULT_DEV_KEY else "(as given)"
    print(
        f"dev_key {key}; control API at {server.url}{CONTROL_PREFIX}; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    if smpp is not None:
        print(f"pytest-engagelab SMPP door listening on {smpp.url}", flush=True)
    # Last: clients that wait for this line find the banner above before any request line.
    print(f"pytest-engagelab emulator listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if smpp is not None:
            smpp.stop()
        server.stop()
    print("pytest-engagelab emulator stopped", file=sys.stderr, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "cassettes":
        return _cassettes(args)
    if args.command != "serve":
        parser.print_help(sys.stderr)
        return 2
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
