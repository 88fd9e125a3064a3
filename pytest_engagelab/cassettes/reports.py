"""What a cassette run reports: a replay miss without library frames, scrubbed text, and
the review of a re-record -- what EngageLab answers differently, cassette by cassette.

The review compares only the contract: status, the ``code`` field, which fields are
present with which JSON types, and ``send_channel`` values -- never message ids or other
values, which change on every recording.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pytest_engagelab.cassettes.scrub import Scrubber

#: What a review says of a cassette whose answers did not change.
NO_CHANGE: Final = "no change in EngageLab's answers"


def miss_report(excinfo: Any, test_file: Path) -> str:
    """A failure report for a :class:`CassetteMiss`: its message and where the test made
    the request, without the frames of httpx and vcrpy."""
    lines = [str(excinfo.value)]
    for entry in reversed(excinfo.traceback):
        if Path(str(entry.path)) == test_file:
            lines.append(f"(the request was made at {test_file.name}:{entry.lineno + 1})")
            break
    return "\n".join(lines)


def scrub_report(report: Any, scrubber: Scrubber) -> None:
    """Scrub a pytest report's failure text and captured sections, in place, when they
    hold a secret (a repr, a print, an exception message of the code under test)."""
    if report.longrepr is not None:
        text = str(report.longrepr)
        scrubbed = scrubber.report_text(text)
        if scrubbed != text:
            report.longrepr = scrubbed
    report.sections = [(title, scrubber.report_text(content)) for title, content in report.sections]


# -- the review of a re-record ---------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between the old and the new answer to one request: the n-th request
    with a method and path in the old recording is compared with the n-th in the new."""

    request: str  # "POST /v1/messages"
    occurrence: int  # 1 for the first such request in the cassette, 2 for the second...
    what: str  # "status", "code", "field", "send_channel", "request"
    name: str  # the field's path for "field", else ""
    old: Any
    new: Any

    def describe(self) -> str:
        """The change in the review's words: ``code 5013 -> 5001``, ``field "x" new``."""
        if self.what == "request":
            return "new request" if self.old is None else "no longer requested"
        if self.what == "field":
            if self.old is None:
                return f'field "{self.name}" new'
            if self.new is None:
                return f'field "{self.name}" gone'
            return f'field "{self.name}" {self.old} -> {self.new}'
        return f"{self.what} {_value(self.old)} -> {_value(self.new)}"

    def as_json(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "occurrence": self.occurrence,
            "what": self.what,
            "name": self.name,
            "old": self.old,
            "new": self.new,
        }


def _value(value: Any) -> str:
    return "none" if value is None else str(value)


@dataclass(frozen=True)
class CassetteReview:
    """What a re-record changed in one cassette.

    ``status`` is ``new`` (no cassette before), ``changed``, ``unchanged``, ``kept`` (a
    ``rewrite`` recorded nothing and the old file stayed), ``removed`` or ``unreadable``
    (the diff command only).
    """

    cassette: str
    status: str  # "new", "changed", "unchanged", "kept", "removed", "unreadable"
    changes: tuple[Change, ...] = ()
    interactions: int = 0
    note: str = ""

    def lines(self) -> list[str]:
        """The review of this cassette, one line per request whose answer changed."""
        if self.status == "new":
            return [f"{self.cassette}: new cassette, {_count(self.interactions)}"]
        if self.status == "removed":
            return [f"{self.cassette}: cassette removed"]
        if self.status in ("kept", "unreadable"):
            return [f"{self.cassette}: {self.note}"]
        if not self.changes:
            return [f"{self.cassette}: {NO_CHANGE}"]
        lines = []
        for label, group in _grouped(self.changes):
            lines.append(f"{self.cassette}: {label}: " + "; ".join(c.describe() for c in group))
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "cassette": self.cassette,
            "status": self.status,
            "interactions": self.interactions,
            "note": self.note,
            "changes": [change.as_json() for change in self.changes],
            "lines": self.lines(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CassetteReview:
        changes = tuple(
            Change(
                str(c["request"]),
                int(c["occurrence"]),
                str(c["what"]),
                str(c["name"]),
                c["old"],
                c["new"],
            )
            for c in data.get("changes", ())
        )
        return cls(
            str(data["cassette"]),
            str(data["status"]),
            changes,
            int(data.get("interactions", 0)),
            str(data.get("note", "")),
        )


def _count(n: int) -> str:
    return f"{n} interaction" + ("" if n == 1 else "s")


def _grouped(changes: Sequence[Change]) -> Iterator[tuple[str, list[Change]]]:
    groups: dict[tuple[str, int], list[Change]] = {}
    for change in changes:
        groups.setdefault((change.request, change.occurrence), []).append(change)
    for (request, occurrence), group in groups.items():
        path = request.split(" ", 1)[1]
        suffix = f" #{occurrence}" if occurrence > 1 else ""
        if group[0].what == "request":
            yield f"{path}{suffix}", group
        else:
            yield f"{path} answer{suffix}", group


# -- comparing two recordings ---------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    status: Any
    code: Any
    fields: dict[str, str]
    channels: str | None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "array"
    return "object"


def _flatten(value: Any, where: str, into: dict[str, str], channels: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            _add(into, name, _kind(item))
            if key == "send_channel" and isinstance(item, str):
                channels.add(item)
            _flatten(item, name, into, channels)
    elif isinstance(value, list):
        for item in value:
            _add(into, f"{where}[]", _kind(item))
            _flatten(item, f"{where}[]", into, channels)


def _add(into: dict[str, str], name: str, kind: str) -> None:
    known = into.get(name)
    if known is None:
        into[name] = kind
    elif kind not in known.split("|"):
        into[name] = "|".join(sorted({*known.split("|"), kind}))


def text_of(value: Any) -> str:
    """A recorded body or header as text: ``""`` for none, bytes decoded as UTF-8."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _answer(response: Mapping[str, Any]) -> _Answer:
    status_info = response.get("status")
    status = status_info.get("code") if isinstance(status_info, dict) else None
    body = response.get("body")
    text = text_of(body.get("string") if isinstance(body, dict) else None)
    fields: dict[str, str] = {}
    channels: set[str] = set()
    code = None
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        fields["(body)"] = "text"
    else:
        if isinstance(data, dict):
            code = data.get("code")
        elif data is not None and not isinstance(data, list):
            fields["(body)"] = _kind(data)
        _flatten(data, "", fields, channels)
    return _Answer(status, code, fields, ",".join(sorted(channels)) or None)


def _request_label(request: Mapping[str, Any]) -> str:
    method = str(request.get("method", "GET")).upper()
    path = urllib.parse.urlsplit(str(request.get("uri", ""))).path or "/"
    return f"{method} {path}"


def _grouped_answers(interactions: Iterable[Mapping[str, Any]]) -> dict[str, list[_Answer]]:
    groups: dict[str, list[_Answer]] = {}
    for interaction in interactions:
        request, response = interaction.get("request"), interaction.get("response")
        if isinstance(request, Mapping) and isinstance(response, Mapping):
            groups.setdefault(_request_label(request), []).append(_answer(response))
    return groups


def compare_interactions(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> list[Change]:
    """The changes from ``old`` to ``new`` (lists of cassette interactions): the n-th request
    with a method and path is compared with the n-th one with the same method and path."""
    before, after = _grouped_answers(old), _grouped_answers(new)
    changes: list[Change] = []
    for request in [*after, *(r for r in before if r not in after)]:
        olds, news = before.get(request, []), after.get(request, [])
        for number in range(max(len(olds), len(news))):
            if number >= len(olds):
                changes.append(Change(request, number + 1, "request", "", None, "new"))
            elif number >= len(news):
                changes.append(Change(request, number + 1, "request", "", "gone", None))
            else:
                changes += _answer_changes(request, number + 1, olds[number], news[number])
    return changes


def _answer_changes(request: str, occurrence: int, old: _Answer, new: _Answer) -> list[Change]:
    changes = []

    def change(what: str, name: str, before: Any, after: Any) -> None:
        changes.append(Change(request, occurrence, what, name, before, after))

    if old.status != new.status:
        change("status", "", old.status, new.status)
    if old.code != new.code:
        change("code", "", old.code, new.code)
    if old.status == new.status:
        for name, kind in new.fields.items():
            if name not in old.fields:
                change("field", name, None, kind)
            elif old.fields[name] != kind:
                change("field", name, old.fields[name], kind)
        for name, kind in old.fields.items():
            if name not in new.fields:
                change("field", name, kind, None)
        if old.channels != new.channels:
            change("send_channel", "", old.channels, new.channels)
    return changes


def review_recording(
    cassette: str, old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> CassetteReview:
    """The review of a cassette recorded as ``new`` over ``old`` (empty: there was none)."""
    if not old:
        return CassetteReview(cassette, "new", interactions=len(new))
    changes = tuple(compare_interactions(old, new))
    return CassetteReview(
        cassette, "changed" if changes else "unchanged", changes, interactions=len(new)
    )


def summary_line(reviews: Sequence[CassetteReview]) -> str:
    """The last line of a review: how many cassettes, and whether any answer changed."""
    counts: dict[str, int] = {}
    for review in reviews:
        counts[review.status] = counts.get(review.status, 0) + 1
    parts = [
        f"{counts[status]} {status}"
        for status in ("changed", "new", "unchanged", "kept", "removed", "unreadable")
        if status in counts
    ]
    total = len(reviews)
    head = f"{total} cassette{'' if total == 1 else 's'} ({', '.join(parts)})"
    if counts.get("changed", 0) or counts.get("removed", 0) or counts.get("unreadable", 0):
        return f"{head}: EngageLab's answers changed, see above"
    return f"{head}: No change in EngageLab's answers"


def review_lines(reviews: Sequence[CassetteReview]) -> list[str]:
    """Every cassette's lines (sorted by cassette), then :func:`summary_line`."""
    lines = [
        line for review in sorted(reviews, key=lambda r: r.cassette) for line in review.lines()
    ]
    return [*lines, summary_line(reviews)]


def review_json(reviews: Sequence[CassetteReview]) -> str:
    """The machine-readable review (``--engagelab-review=PATH``, ``cassettes diff --json``)."""
    ordered = sorted(reviews, key=lambda r: r.cassette)
    data = {
        "format": 1,
        "summary": summary_line(ordered),
        "changed": any(r.status in ("changed", "removed", "unreadable") for r in ordered),
        "cassettes": [review.as_json() for review in ordered],
    }
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


# -- comparing cassette files and directories (python -m pytest_engagelab cassettes diff) ---


def _cassette_files(root: Path) -> dict[str, Path]:
    return {
        path.relative_to(root).as_posix(): path
        for pattern in ("*.yaml", "*.yml")
        for path in root.rglob(pattern)
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    }


def diff_paths(old: Path, new: Path) -> list[CassetteReview]:
    """The review of ``new`` against ``old``: two cassette files, or two directories whose
    cassettes are paired by their path inside them (a cassette only in ``new`` is new, one
    only in ``old`` removed).  Cassettes are named as found under ``new``."""
    from pytest_engagelab.cassettes.errors import CassetteError
    from pytest_engagelab.cassettes.files import read_cassette

    if old.is_dir() != new.is_dir() and old.exists() and new.exists():
        raise ValueError(
            f"compare a file with a file or a directory with a directory: {old}, {new}"
        )
    if new.is_dir() or old.is_dir():
        before = _cassette_files(old) if old.is_dir() else {}
        after = _cassette_files(new) if new.is_dir() else {}
        pairs = [
            (new / name, before.get(name), after.get(name))
            for name in sorted(set(before) | set(after))
        ]
    else:
        pairs = [(new, old if old.exists() else None, new if new.exists() else None)]
    reviews = []
    for shown, old_file, new_file in pairs:
        name = str(shown)
        try:
            old_data = read_cassette(old_file)["interactions"] if old_file else []
            if new_file is None:
                reviews.append(CassetteReview(name, "removed"))
                continue
            new_data = read_cassette(new_file)["interactions"]
        except CassetteError as error:
            reviews.append(CassetteReview(name, "unreadable", note=f"unreadable: {error.problem}"))
            continue
        reviews.append(review_recording(name, old_data, new_data))
    return reviews
