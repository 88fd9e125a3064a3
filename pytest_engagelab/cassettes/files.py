"""Cassette files: their names, reading them with readable errors, and atomic writes."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from pytest_engagelab.cassettes.errors import CassetteError
from pytest_engagelab.cassettes.scrub import Scrubber

#: The vcrpy cassette format this plugin reads and writes.
CASSETTE_FORMAT_VERSION: Final = 1



# -- files ------------------------------------------------------------------------------------

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.\-\[\]=,+]")


def cassette_file_name(module_path: str, test_name: str, name: str | None = None) -> str:
    """The cassette file of a test, relative to the cassette directory.

    With the marker's ``name``: ``<name>.yaml``.  Otherwise
    ``<module>/<test>.yaml``: ``module_path`` is the test file relative to the
    rootdir (``tests/test_signup.py`` -> ``tests.test_signup``), ``test_name``
    the test's name within it (``TestLogin::test_ok[en]`` -> ``TestLogin.test_ok[en]``).
    """
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
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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
    return data


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
            {
                "request": compat.convert_to_unicode(request._to_dict()),
                "response": compat.convert_to_unicode(response),
            }
            for request, response in zip(
                cassette_dict["requests"], cassette_dict["responses"], strict=True
            )
        ]
        data: dict[str, Any] = {"version": CASSETTE_FORMAT_VERSION}
        if self.header:
            data["engagelab"] = self.header
        data["interactions"] = interactions
        text = (
            "# pytest-engagelab cassette (vcrpy format 1): recorded, secrets scrubbed.\n"
            + serializer.serialize(data)
        )
        if self.scrubber is not None and self.scrubber.leaks(text):
            raise CassetteError(
                cassette_path,
                "not written: a secret is still in it after scrubbing (please report this)",
            )
        write_atomically(Path(cassette_path), text)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise




def cassette_path(
    directory: Path, rootdir: Path, test_file: Path, nodeid: str, marker: Any
) -> Path:
    """The cassette file of a test from its ``engagelab_cassette`` marker (``ValueError``
    with the message to show when the marker's arguments are wrong)."""
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
        relative = cassette_file_name(module, test_name, names[0] if names else None)
    except ValueError as error:
        raise ValueError(f"@pytest.mark.engagelab_cassette: {error}") from None
    return directory / relative


def shared_cassettes(directory: Path, rootdir: Path, items: Iterable[Any]) -> str | None:
    """The message for tests that would record into the same cassette, or ``None``."""
    owners: dict[Path, str] = {}
    for item in items:
        marker = item.get_closest_marker("engagelab_cassette")
        if marker is None:
            continue
        try:
            path = cassette_path(directory, rootdir, item.path, item.nodeid, marker)
        except ValueError:
            continue  # reported when the test runs
        if path in owners:
            return (
                f"pytest-engagelab: {owners[path]} and {item.nodeid} both record into cassette "
                f"{path}; recording one would overwrite the other: give each test its own "
                "@pytest.mark.engagelab_cassette name"
            )
        owners[path] = item.nodeid
    return None
