"""The journal of what the emulator delivered, and the assertions made on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_engagelab.emulator.bounded import BoundedLog

__all__ = ["Journal", "SentMessage"]




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

    def describe(self) -> str:
        """One line for failure messages."""
        return (
            f"to={self.to!r}, template_id={self.template_id!r}, language={self.language!r}, "
            f"params={self.params!r} ({self.endpoint}, send_channel={self.send_channel!r}, "
            f"message_id={self.message_id!r})"
        )


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
    the matching and failure reports of the ``assert_sent`` family."""

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
