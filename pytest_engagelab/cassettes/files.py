"""Cassette files: their names, reading them with readable errors, and atomic writes.

Why this module is long: it holds one file's whole life -- its name, reading it
(aliases bounded, fields checked), the persister that writes it in the stable form
(no loopback port, no ``Date``, ``recorded_at`` by day), the atomic write and the
clean-up of killed writers' temporaries -- and these share the format's details.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import re
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pytest_engagelab.cassettes.errors import CassetteError
from pytest_engagelab.cassettes.scrub import Scrubber, mask_in_name

#: The vcrpy cassette format this plugin reads and writes.
CASSETTE_FORMAT_VERSION: Final = 1
#: The first line of every cassette this plugin writes.
_FIRST_LINE: Final = "# pytest-engagelab cassette (vcrpy format 1): recorded, secrets scrubbed.\n"


# -- files ------------------------------------------------------------------------------------

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.\-\[\]=,+]")


def cassette_file_name(
    module_path: str, test_name: str, name: str | None = None, *, secrets: Sequence[str] = ()
) -> str:
    """The cassette file of a test, relative to the cassette directory.

    With the marker's ``name``: ``<name>.yaml``.  Otherwise
    ``<module>/<test>.yaml``: ``module_path`` is the test file relative to the
    rootdir (``tests/test_signup.py`` -> ``tests.test_signup``), ``test_name``
    the test's name within it (``TestLogin::test_ok[en]`` -> ``TestLogin.test_ok[en]``).
    A test parametrized with one of ``secrets`` gets ``REDACTED`` in its file name
    instead (so does a run of 8 or more characters of one).
    """
    if secrets:
        test_name = mask_in_name(test_name, secrets)
    if name is not None:
        parts = [
            _safe(part) for part in name.replace("\\", "/").split("/") if part not in ("", ".")
        ]
        if not parts or ".." in parts:
            raise ValueError(f"cassette name {name!r} must be a relative path inside the directory")
        relative = "/".join(parts)
        return relative if relative.endswith((".yaml", ".yml")) else relative + ".yaml"
    module = module_path.replace("\\", "/").removesuffix(".py").replace("/", ".")
    return f"{_safe(module)}/{_safe(test_name.replace('::', '.'))}.yaml"


def _safe(part: str) -> str:
    return _UNSAFE.sub("_", part)


def read_cassette(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A cassette file as data, checked: a YAML mapping with ``version: 1`` and a list of
    ``interactions``, each with a ``request`` and a ``response``.

    Raises :class:`CassetteError` naming the file and the problem; a missing
    file raises ``FileNotFoundError``.
    """
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CassetteError(file, "not UTF-8 text") from None
    if not text.strip():
        raise CassetteError(file, "the file is empty; delete it or record it again")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _bound_aliases(text, loader)
        with gc_paused():
            data = yaml.load(text, Loader=loader)
    except _AliasProblem as error:
        raise CassetteError(file, str(error)) from None
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())
        raise CassetteError(file, f"not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise CassetteError(file, f"expected a mapping at the top, found {type(data).__name__}")
    version = data.get("version")
    if version != CASSETTE_FORMAT_VERSION:
        raise CassetteError(
            file,
            f"format version {version!r} is not supported (this plugin reads vcrpy cassette "
            f"format version {CASSETTE_FORMAT_VERSION}); record it again",
        )
    interactions = data.get("interactions")
    if not isinstance(interactions, list):
        raise CassetteError(file, "'interactions' must be a list")
    for number, interaction in enumerate(interactions, start=1):
        if not (
            isinstance(interaction, dict)
            and isinstance(interaction.get("request"), dict)
            and isinstance(interaction.get("response"), dict)
        ):
            raise CassetteError(
                file, f"interaction {number} must be a mapping with 'request' and 'response'"
            )
        wrong = _interaction_problem(interaction["request"], interaction["response"])
        if wrong is not None:
            raise CassetteError(file, f"interaction {number}: {wrong}")
    return data


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a cassette is built: loading makes hundreds of
    thousands of objects, none of them garbage, and each full collection walks them all
    (10,000 interactions load 5 times faster without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _AliasProblem(Exception):
    """Aliases that would make a cassette far larger than written, or recursive."""


#: How many values aliases may add to a cassette beyond what is written out in it.
_ALIAS_ALLOWANCE: Final = 10_000


def _bound_aliases(text: str, loader: Any) -> None:
    """Raise :class:`_AliasProblem` when the aliases of a document (``*name``) would make it
    much larger than written, or refer to a node that contains them.

    A few hundred bytes of nested aliases stand for billions of values (a "billion
    laughs" file): loading shares them, but anything that walks the data then takes
    minutes and gigabytes.  So the size each anchored node stands for is counted from
    the parser's events, before anything is built; a document may grow through
    aliases by its own size plus a small allowance (hand-written anchors still load).
    An alias needs an anchor (``&name``): text without ``&`` needs no extra pass.
    """
    import yaml

    if "&" not in text:
        return
    sizes: dict[str, int] = {}
    open_nodes: list[list[Any]] = [[0, None]]  # [size so far, anchor] of each open collection
    written = 0
    for event in yaml.parse(text, Loader=loader):
        written += 1
        if isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([1, event.anchor])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            size, anchor = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:
                raise _AliasProblem(
                    f"refused: the YAML alias *{event.anchor} refers to a node that contains "
                    "it; a cassette cannot be recursive"
                )
            size = sizes[event.anchor]
        else:
            continue
        open_nodes[-1][0] += size
        expanded = sum(node[0] for node in open_nodes)
        if expanded > 2 * written + _ALIAS_ALLOWANCE:
            raise _AliasProblem(
                f"refused: its YAML aliases stand for more than {expanded:,} values though only "
                f"{written:,} are written (an alias bomb?); write it without aliases "
                "(*name) or record it again"
            )


def _is_text(value: Any) -> bool:
    return value is None or isinstance(value, str | bytes)


def _interaction_problem(request: Mapping[str, Any], response: Mapping[str, Any]) -> str | None:
    """What is wrong with one recorded interaction's fields, or ``None``."""
    for name in ("method", "uri"):
        if not isinstance(request.get(name), str):
            return f"the request's {name!r} must be a string"
    body = request.get("body")
    if not _is_text(body):
        return (
            f"the request body must be a string (the JSON text, quoted), found "
            f"{type(body).__name__}"
        )
    if not isinstance(request.get("headers", {}), dict):
        return "the request's 'headers' must be a mapping"
    status = response.get("status")
    if not (isinstance(status, dict) and type(status.get("code")) is int):
        return "the response's 'status' must be a mapping with an integer 'code'"
    answer = response.get("body")
    if not (isinstance(answer, dict) and isinstance(answer.get("string"), str | bytes)):
        return "the response body must be a mapping whose 'string' is a string"
    headers = response.get("headers", {})
    if not isinstance(headers, dict):
        return "the response's 'headers' must be a mapping"
    return None


class AtomicPersister:
    """vcrpy persister: readable load errors, atomic writes, and a last secret check.

    Loading goes through :func:`read_cassette`, so a broken file is reported
    with its path and problem instead of being treated as empty (vcrpy's
    default).  Saving writes a temporary file next to the cassette and renames
    it over the old one (``os.replace``), so an interrupted run leaves the old
    cassette or none, never half of one; before writing, the text is searched
    for every secret the scrubber knows and the write is refused if one is left.
    ``ignore_existing`` makes loading see no cassette (record mode ``rewrite``).
    """

    def __init__(
        self,
        *,
        scrubber: Scrubber | None = None,
        ignore_existing: bool = False,
        header: Mapping[str, Any] | None = None,
    ) -> None:
        self.scrubber = scrubber
        self.ignore_existing = ignore_existing
        self.header = dict(header or {})
        #: The ``engagelab`` header of the cassette as loaded (``{}`` when none was).
        self.loaded_header: dict[str, Any] = {}
        #: The data written by the last :meth:`save_cassette`, ``None`` before.
        self.saved: dict[str, Any] | None = None

    def load_cassette(self, cassette_path: str, serializer: Any) -> tuple[list[Any], list[Any]]:
        from vcr.persisters.filesystem import CassetteNotFoundError  # type: ignore[import-untyped]
        from vcr.request import Request  # type: ignore[import-untyped]
        from vcr.serializers import compat  # type: ignore[import-untyped]

        if self.ignore_existing:
            raise CassetteNotFoundError()
        try:
            data = read_cassette(cassette_path)
        except FileNotFoundError:
            raise CassetteNotFoundError() from None
        header = data.get("engagelab")
        self.loaded_header = dict(header) if isinstance(header, dict) else {}
        try:
            requests = [Request._from_dict(i["request"]) for i in data["interactions"]]
            responses = [compat.convert_to_bytes(i["response"]) for i in data["interactions"]]
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as error:
            raise CassetteError(
                cassette_path, f"an interaction is missing a field or has a wrong type ({error!r})"
            ) from None
        return requests, responses

    def save_cassette(
        self, cassette_path: str, cassette_dict: Mapping[str, Any], serializer: Any
    ) -> None:
        from vcr.serializers import compat

        interactions = [
            _stable(
                compat.convert_to_unicode(request._to_dict()),
                compat.convert_to_unicode(dict(response)),
            )
            for request, response in zip(
                cassette_dict["requests"], cassette_dict["responses"], strict=True
            )
        ]
        data: dict[str, Any] = {"version": CASSETTE_FORMAT_VERSION}
        if self.header:
            header = dict(self.header)
            if isinstance(header.get("base_url"), str):
                header["base_url"] = stable_url(header["base_url"])
            data["engagelab"] = header
        data["interactions"] = interactions
        text = _FIRST_LINE + dump_yaml(data)
        if self.scrubber is not None and self.scrubber.leaks(text):
            raise CassetteError(
                cassette_path,
                "not written: a secret is still in it after scrubbing (please report this)",
            )
        write_atomically(Path(cassette_path), text)
        self.saved = data


def dump_yaml(data: Mapping[str, Any]) -> str:
    """``data`` as block YAML, keys sorted, without anchors or aliases (which
    :func:`read_cassette` refuses), readable by vcrpy's own loader."""
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class _Dumper(base):  # type: ignore[valid-type,misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(
        data, Dumper=_Dumper, default_flow_style=False, sort_keys=True, allow_unicode=False
    )


# -- stable files --------------------------------------------------------------------------

#: Response headers that change on every request and are no part of EngageLab's contract.
_VOLATILE_RESPONSE_HEADERS: Final = frozenset({"date"})
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})


def _is_loopback(host: str) -> bool:
    import ipaddress

    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def stable_url(url: str) -> str:
    """``url`` without its port when its host is a loopback address (a stand-in on an
    ephemeral port, whose number changes every run); any other URL unchanged."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if host is None or not _is_loopback(host):
        return url
    try:
        if parts.port is None:
            return url
    except ValueError:
        return url
    netloc = parts.netloc.rsplit(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _stable_host(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and _is_loopback(host):
        return host
    return value


def _stable(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """One interaction as written: what changes between two recordings of the same answer
    and is not EngageLab's (a loopback stand-in's port, the ``Date`` header) is left out."""
    request = dict(request)
    if isinstance(request.get("uri"), str):
        request["uri"] = stable_url(request["uri"])
    headers = request.get("headers")
    if isinstance(headers, dict):
        request["headers"] = {
            name: [_stable_host(str(v)) for v in values]
            if name.lower() == "host" and isinstance(values, list)
            else values
            for name, values in headers.items()
        }
    response = dict(response)
    headers = response.get("headers")
    if isinstance(headers, dict):
        response["headers"] = {
            name: values
            for name, values in headers.items()
            if name.lower() not in _VOLATILE_RESPONSE_HEADERS
        }
    return {"request": request, "response": response}


def recorded_on(today: datetime.date | None = None) -> str:
    """The ``recorded_at`` value for a cassette written now: the UTC date (a re-record on
    the same day changes no line for it)."""
    day = today or datetime.datetime.now(datetime.UTC).date()
    return day.isoformat()


def recorded_at(data: Mapping[str, Any]) -> datetime.date | None:
    """When a cassette (as read by :func:`read_cassette`) was recorded, ``None`` when it
    does not say (cassettes written before 0.2 do not)."""
    header = data.get("engagelab")
    value = header.get("recorded_at") if isinstance(header, dict) else None
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


#: A temporary file without a live owner is removed once it is this old (seconds).
_STALE_TEMPORARY_AGE: Final = 60.0


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory.

    Temporary files of this cassette left by an earlier writer that was killed
    (``kill -9``, a power cut) are removed first: those whose process is gone,
    and any older than a minute.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as someone else's process
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    prefix = f".{path.name}."
    now = time.time()
    try:
        candidates = [
            p
            for p in path.parent.iterdir()
            if p.name.startswith(prefix) and p.name.endswith(".tmp")
        ]
    except OSError:
        return
    for candidate in candidates:
        middle = candidate.name[len(prefix) : -len(".tmp")]
        pid_text = middle.split(".", 1)[0]
        try:
            old = now - candidate.stat().st_mtime > _STALE_TEMPORARY_AGE
        except OSError:
            continue
        orphan = pid_text.isdigit() and "." in middle and not _pid_alive(int(pid_text))
        if orphan or old:
            candidate.unlink(missing_ok=True)


def cassette_path(
    directory: Path,
    rootdir: Path,
    test_file: Path,
    nodeid: str,
    marker: Any,
    *,
    secrets: Sequence[str] = (),
) -> Path:
    """The cassette file of a test from its ``engagelab_cassette`` marker (``ValueError``
    with the message to show when the marker's arguments are wrong); ``secrets`` never
    reach the file name (see :func:`cassette_file_name`)."""
    names = list(marker.args) + ([marker.kwargs["name"]] if "name" in marker.kwargs else [])
    if (
        len(names) > 1
        or set(marker.kwargs) - {"name"}
        or not all(isinstance(n, str) and n.strip() for n in names)
    ):
        raise ValueError(
            "@pytest.mark.engagelab_cassette takes at most one argument, the cassette name "
            f"(a string such as 'signup/send_code'), got args={marker.args!r} "
            f"kwargs={marker.kwargs!r}"
        )
    try:
        module = test_file.relative_to(rootdir).as_posix()
    except ValueError:
        module = test_file.name
    test_name = nodeid.split("::", 1)[1] if "::" in nodeid else nodeid
    try:
        relative = cassette_file_name(
            module, test_name, names[0] if names else None, secrets=secrets
        )
    except ValueError as error:
        raise ValueError(f"@pytest.mark.engagelab_cassette: {error}") from None
    return directory / relative


def shared_cassettes(
    directory: Path, rootdir: Path, items: Iterable[Any], *, secrets: Sequence[str] = ()
) -> dict[str, str]:
    """For each test that would record into the same cassette as an earlier one, the
    message that says so (by node id; empty when every test has its own cassette)."""
    owners: dict[Path, str] = {}
    problems: dict[str, str] = {}
    for item in items:
        marker = item.get_closest_marker("engagelab_cassette")
        if marker is None:
            continue
        try:
            path = cassette_path(
                directory, rootdir, item.path, item.nodeid, marker, secrets=secrets
            )
        except ValueError:
            continue  # reported when the test runs
        if path in owners:
            message = (
                f"pytest-engagelab: {owners[path]} and {item.nodeid} both record into cassette "
                f"{path}; recording one would overwrite the other: give each test its own "
                "@pytest.mark.engagelab_cassette name"
            )
            problems.setdefault(owners[path], message)
            problems[item.nodeid] = message
        else:
            owners[path] = item.nodeid
    return problems
