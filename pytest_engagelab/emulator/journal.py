"""The journal of what the emulator delivered, and the assertions made on it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from pytest_engagelab.emulator.bounded import BoundedLog

__all__ = [
    "Journal",
    "SentMessage",
    "build_request",
    "message_atoms",
    "message_from_atoms",
    "register_request_builder",
]

_new: Final = object.__new__
#: The doors' request builders by name (see :func:`register_request_builder`).
_REQUEST_BUILDERS: Final[dict[str, Callable[..., Any]]] = {}


def register_request_builder(name: str, builder: Callable[..., Any]) -> None:
    """Let a door keep its requests as atoms.

    A door that calls ``Emulator.handle(..., request_recipe=(name, *atoms))`` (strings,
    bytes, numbers and tuples of them) has its request built as ``builder(*atoms)``
    only when a test first reads ``SentMessage.request`` or ``RequestRecord.headers``:
    the journal and the request log keep nothing the garbage collector has to track,
    where a kept ``httpx.Request`` is a handful of tracked objects per send.  The built
    request must have ``headers``, a mapping, for ``RequestRecord.headers``."""
    _REQUEST_BUILDERS[name] = builder


def build_request(recipe: tuple[Any, ...]) -> Any:
    """The door's request a recipe describes (see :func:`register_request_builder`)."""
    return _REQUEST_BUILDERS[recipe[0]](*recipe[1:])


@dataclass(frozen=True)
class SentMessage:
    """One message the emulator accepted and delivered.

    ``send_channel`` is what the API answered (the first channel of the
    strategy); ``delivery_channel`` is the channel that finally delivered it and
    ``failed_channels`` the ones that failed before (the WhatsApp fallback
    number).  ``language`` is the effective language (``"default"`` when the
    request gave none); ``params`` is ``{}`` when it gave none.  ``request`` is
    the door's request that asked for it (an ``httpx.Request`` under ``otp_mock``,
    ``None`` where the door keeps none).
    """

    to: str
    template_id: str
    language: str
    params: dict[str, str]
    code: str
    message_id: str
    send_channel: str
    endpoint: str
    request: Any = field(repr=False, compare=False)
    text: str = ""
    delivery_channel: str = ""
    failed_channels: tuple[str, ...] = ()
    sent_at: float = 0.0
    expires_at: float = 0.0

    if not TYPE_CHECKING:  # seen at run time only: mypy keeps checking attribute names

        def __getattr__(self, name: str) -> Any:
            # Reached only for ``request`` of a message kept as atoms: built on first read.
            recipe = self.__dict__.get("_recipe") if name == "request" else None
            if recipe is None:
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r}"
                )
            request = self.__dict__["request"] = build_request(recipe)
            return request

    def describe(self) -> str:
        """One line for failure messages."""
        return (
            f"to={self.to!r}, template_id={self.template_id!r}, language={self.language!r}, "
            f"params={self.params!r} ({self.endpoint}, send_channel={self.send_channel!r}, "
            f"message_id={self.message_id!r})"
        )


#: Where fields sit in a journal entry kept as atoms (see :func:`message_from_atoms`).
TO, CODE, MESSAGE_ID, EXPIRES_AT, PARAMS = 0, 3, 4, 12, 13


def message_atoms(
    to: str,
    template_id: str,
    language: str,
    code: str,
    message_id: str,
    send_channel: str,
    endpoint: str,
    request: Any,
    text: str,
    delivery_channel: str,
    failed_channel: str,
    sent_at: float,
    expires_at: float,
    params: tuple[str, ...],
    recipe: tuple[Any, ...] | None,
) -> tuple[Any, ...]:
    """A message as the journal keeps it: one flat tuple of strings and numbers (the
    garbage collector stops tracking such a tuple at its first pass over it; a nested
    one may take several).  ``failed_channel`` is the channel that failed before the
    one that delivered, or ``""``; ``params`` is flat (key, value, key, value...);
    ``request`` the door's request object, or ``None`` when ``recipe`` builds it."""
    return (
        to,
        template_id,
        language,
        code,
        message_id,
        send_channel,
        endpoint,
        request,
        text,
        delivery_channel,
        failed_channel,
        sent_at,
        expires_at,
        len(params),
        *params,
        *(recipe or ()),
    )


def message_from_atoms(entry: tuple[Any, ...]) -> SentMessage:
    """The :class:`SentMessage` a journal entry from :func:`message_atoms` describes."""
    (
        to,
        template_id,
        language,
        code,
        message_id,
        send_channel,
        endpoint,
        request,
        text,
        delivery_channel,
        failed_channel,
        sent_at,
        expires_at,
        size,
    ) = entry[: PARAMS + 1]
    params = entry[PARAMS + 1 : PARAMS + 1 + size]
    recipe = entry[PARAMS + 1 + size :]
    message = _new(SentMessage)
    # The frozen dataclass's __dict__ filled in one step, each field given (what the
    # generated __init__ does, without its object.__setattr__ per field).
    message.__dict__.update(
        to=to,
        template_id=template_id,
        language=language,
        params=dict(zip(params[::2], params[1::2], strict=True)),
        code=code,
        message_id=message_id,
        send_channel=send_channel,
        endpoint=endpoint,
        text=text,
        delivery_channel=delivery_channel,
        failed_channels=(failed_channel,) if failed_channel else (),
        sent_at=sent_at,
        expires_at=expires_at,
    )
    if recipe:
        message.__dict__["_recipe"] = recipe
    else:
        message.__dict__["request"] = request
    return message


def _differences(message: SentMessage, expected: dict[str, Any]) -> list[str]:
    lines = []
    for name, value in expected.items():
        if name == "params_include":  # a subset of params: each key it names, as given
            lines.extend(_missing_params(message.params, value))
        elif getattr(message, name) != value:
            lines.append(f"{name}: expected {value!r}, got {getattr(message, name)!r}")
    return lines


def _missing_params(params: dict[str, str], wanted: Mapping[str, str]) -> list[str]:
    lines = []
    for key, value in wanted.items():
        if key not in params:
            lines.append(f"params_include: expected params[{key!r}] == {value!r}, but it is absent")
        elif params[key] != value:
            lines.append(
                f"params_include: expected params[{key!r}] == {value!r}, got {params[key]!r}"
            )
    return lines


def _describe_criteria(expected: dict[str, Any]) -> str:
    if not expected:
        return "any message"
    return ", ".join(f"{name}={value!r}" for name, value in expected.items())


class Journal(BoundedLog[SentMessage]):
    """A thread-safe, bounded list of :class:`SentMessage` (see :class:`BoundedLog`), with
    the matching and failure reports of the ``assert_sent`` family.  The emulator
    appends each message as atoms (:meth:`~BoundedLog.append_compact`), built into a
    :class:`SentMessage` when first read."""

    def _build(self, entry: tuple[Any, ...]) -> SentMessage:
        return message_from_atoms(entry)

    # -- assertions ---------------------------------------------------------------

    def matching(self, expected: dict[str, Any]) -> list[SentMessage]:
        wanted = expected
        return [m for m in self.snapshot() if not _differences(m, wanted)]

    def report(self, headline: str, expected: dict[str, Any]) -> str:
        """A failure message: what was expected, what was sent, how the closest differs."""
        wanted = expected
        sent = self.snapshot()
        lines = [headline, f"Expected: {_describe_criteria(wanted)}"]
        if not sent:
            lines.append("Sent: nothing")
        else:
            lines.append(f"Sent ({len(sent)}):")
            lines.extend(f"  {i}. {m.describe()}" for i, m in enumerate(sent, 1))
            candidates = [(len(_differences(m, wanted)), i, m) for i, m in enumerate(sent, 1)]
            distance, index, closest = min(candidates, key=lambda c: c[0])
            if distance:
                lines.append(f"Closest: #{index}, which differs in")
                lines.extend(f"  {line}" for line in _differences(closest, wanted))
        if self.dropped:
            lines.append(
                f"({self.dropped} older messages were dropped: the journal keeps the last "
                f"{self.limit}; raise journal_limit to keep more)"
            )
        return "\n".join(lines)
