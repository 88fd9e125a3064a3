"""Templates as the emulator knows them, and the template-configs rules of ``template.json``.

:mod:`~pytest_engagelab.emulator.template_configs` checks a ``POST
/v1/template-configs`` body against EngageLab's OpenAPI document for templates
(``template.json``); :meth:`Template.document` is the template as ``GET
/v1/template-configs`` and ``GET /v1/template-configs/{id}`` answer it.  A rule
broken answers 3002 naming the field (:class:`TemplateConfigError`), a strategy
naming a channel whose config is missing 3003 (:class:`TemplateRuleError`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pytest_engagelab.emulator.model import TEMPLATE_ID_MAX

__all__ = [
    "APPROVED",
    "CHANNELS",
    "DEFAULT_CONTENT",
    "PENDING",
    "REJECTED",
    "REVIEW_STATUSES",
    "Template",
    "TemplateConfigError",
    "TemplateRuleError",
    "parse_strategy",
]

CHANNELS: Final = ("whatsapp", "sms", "email", "voice")
DEFAULT_CONTENT: Final = "Your verification code is {{code}}. It expires in {{ttl}} minutes."
#: Review statuses as ``template.json`` numbers them.
PENDING: Final = 1
APPROVED: Final = 2
REJECTED: Final = 3
ReviewStatus = Literal["pending", "approved", "rejected"]
REVIEW_STATUSES: Final[dict[ReviewStatus, int]] = {
    "pending": PENDING,
    "approved": APPROVED,
    "rejected": REJECTED,
}
#: ``sms_config.template_custom_config.custom_sub_type`` values (template.json).
SMS_SUB_TYPES: Final = ("authentication", "marketing", "utility")
#: Where ``{{pwa_url}}`` points for a template with a ``pwa_config``: EngageLab documents
#: no URL form, so the emulator makes one under the reserved ``.invalid`` domain.
PWA_URL_BASE: Final = "https://pwa.engagelab.invalid"
VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
#: The longest validity a code can have, in seconds (366 days).
MAX_TTL: Final = 366 * 86_400
DESCRIPTION_MAX: Final = 255


class TemplateConfigError(ValueError):
    """A template definition breaks a documented rule; the message names the field (3002)."""


class TemplateRuleError(TemplateConfigError):
    """A template definition fails a business rule, such as a strategy channel without its
    config (EngageLab answers 3003)."""


def parse_strategy(strategy: object) -> tuple[str, ...]:
    """``"whatsapp|sms"`` -> ``("whatsapp", "sms")``, checked against the documented rules."""
    if not isinstance(strategy, str) or not strategy.strip():
        raise TemplateConfigError(
            "send_channel_strategy must be a channel or a '|' chain such as 'whatsapp|sms'"
        )
    chain = tuple(part.strip() for part in strategy.split("|"))
    for channel in chain:
        if channel not in CHANNELS:
            raise TemplateConfigError(
                f"send_channel_strategy names unknown channel {channel!r}; "
                f"channels are: {', '.join(CHANNELS)}"
            )
    if len(set(chain)) != len(chain):
        raise TemplateConfigError(f"send_channel_strategy {strategy!r} repeats a channel")
    if "email" in chain and len(chain) > 1:
        raise TemplateConfigError(
            f"send_channel_strategy {strategy!r}: email cannot be combined with other channels"
        )
    return chain


@dataclass
class Template:
    """One OTP template: how codes are made, which channels deliver them, its review.

    ``ttl`` is the code's validity in seconds; ``code_type`` is EngageLab's
    ``verify_code_type`` bitmask (1 digits, 2 lower-case, 4 upper-case letters).
    ``verification`` says whether it is a verification-code template, for which
    /v1/custom-messages requires ``params.code``.  ``status`` is the review status
    (1 pending, 2 approved, 3 rejected) with ``audit_remark``; ``config`` holds the
    documented fields of the definition it was created from (empty for
    :meth:`~pytest_engagelab.emulator.core.Emulator.add_template`).
    """

    template_id: str
    strategy: tuple[str, ...] = ("sms",)
    code_length: int = 6
    ttl: int = 300
    code_type: int = 1
    content: str = DEFAULT_CONTENT
    brand_name: str = "EngageLab"
    from_id: str | None = None
    description: str = ""
    verification: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    pwa_url: str | None = None
    status: int = APPROVED
    audit_remark: str = ""
    created_time: int = 0
    #: Content by ``template.language`` (e-mail ``template_custom_configs``); a language
    #: not listed gets ``content``.
    contents: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.template_id, str) or not self.template_id:
            raise TemplateConfigError("template_id must be a non-empty string")
        if len(self.template_id) > TEMPLATE_ID_MAX:
            raise TemplateConfigError(
                f"template_id is longer than {TEMPLATE_ID_MAX} characters"
            )
        if not 4 <= self.code_length <= 10:
            raise TemplateConfigError(f"code_length must be 4 to 10, not {self.code_length}")
        if not 0 < self.ttl <= MAX_TTL:
            shown = repr(self.ttl) if len(repr(self.ttl)) <= 24 else f"{len(str(self.ttl))} digits"
            raise TemplateConfigError(
                f"ttl must be a positive number of seconds up to {MAX_TTL} (366 days), not {shown}"
            )
        if not 1 <= self.code_type <= 7:
            raise TemplateConfigError(f"code_type must be a 1..7 bitmask, not {self.code_type}")

    @property
    def channels(self) -> frozenset[str]:
        """The channels of the strategy."""
        return frozenset(self.strategy)

    @property
    def strategy_text(self) -> str:
        """The strategy as EngageLab writes it: ``"whatsapp|sms"``."""
        return "|".join(self.strategy)

    @property
    def review(self) -> ReviewStatus:
        """The review status as a word: ``"pending"``, ``"approved"`` or ``"rejected"``."""
        return next(word for word, number in REVIEW_STATUSES.items() if number == self.status)

    def render(self, code: str, params: dict[str, str], language: str = "default") -> str:
        """The delivered text in ``language``: ``{{code}}`` and presets filled, unknown
        variables kept as is.

        Each variable takes, first found: ``code``; the param of its name; the presets
        ``brand_name``, ``ttl`` (minutes) and ``pwa_url`` (when set).  The content is
        split at its variables once (:func:`_pieces`), not searched on every send.
        """
        content = self.contents.get(language, self.content) if self.contents else self.content
        if not params:  # most sends: the text around the code depends on the template only
            return code.join(_around_code(content, self.brand_name, self.ttl, self.pwa_url))
        pieces, tail = _pieces(content)
        out: list[str] = []
        for literal, name, written in pieces:
            if name == "code":
                value = code
            elif name in params:
                value = params[name]
            elif name == "brand_name":
                value = self.brand_name
            elif name == "ttl":
                value = str(max(1, self.ttl // 60))
            elif name == "pwa_url" and self.pwa_url is not None:
                value = self.pwa_url
            else:
                value = written
            out.append(literal)
            out.append(value)
        out.append(tail)
        return "".join(out)

    def document(self) -> dict[str, Any]:
        """The template as ``GET /v1/template-configs[/{id}]`` answer it (template.json)."""
        body: dict[str, Any] = {
            "template_id": self.template_id,
            "description": self.description,
            "send_channel_strategy": self.strategy_text,
            "brand_name": self.brand_name,
        }
        if self.verification or "verify_code_config" in self.config:
            body["verify_code_config"] = {
                "verify_code_type": self.code_type,
                "verify_code_len": self.code_length,
                "verify_code_ttl": max(1, self.ttl // 60),
            }
        for channel in CHANNELS:
            key = f"{channel}_config"
            given = self.config.get(key)
            if given is None and channel not in self.channels:
                continue
            channel_config = copy_config(given) if given is not None else _default_channel(self)
            if channel == "sms":
                channel_config["template_parts"] = [
                    {"language": "default", "content": self.content}
                ]
            body[key] = channel_config
        if "pwa_config" in self.config:
            body["pwa_config"] = copy_config(self.config["pwa_config"])
        body["created_time"] = self.created_time
        body["status"] = self.status
        body["audit_remark"] = self.audit_remark
        return body

    # Kept for callers of the earlier names: both answers are now the documented shape.
    summary = document
    full_config = document


@functools.lru_cache(maxsize=256)
def _pieces(content: str) -> tuple[tuple[tuple[str, str, str], ...], str]:
    """``content`` split at its ``{{variables}}``: (text before, name, the variable as
    written) for each, and the text after the last."""
    pieces = []
    start = 0
    for match in VARIABLE.finditer(content):
        pieces.append((content[start : match.start()], match.group(1), match.group(0)))
        start = match.end()
    return tuple(pieces), content[start:]


@functools.lru_cache(maxsize=256)
def _around_code(
    content: str, brand_name: str, ttl: int, pwa_url: str | None
) -> tuple[str, ...]:
    """What :meth:`Template.render` makes of ``content`` without params, split where the
    code goes: the presets filled once per template, not on every send."""
    pieces, tail = _pieces(content)
    parts: list[str] = []
    text = ""
    for literal, name, written in pieces:
        text += literal
        if name == "code":
            parts.append(text)
            text = ""
        elif name == "brand_name":
            text += brand_name
        elif name == "ttl":
            text += str(max(1, ttl // 60))
        elif name == "pwa_url" and pwa_url is not None:
            text += pwa_url
        else:
            text += written
    parts.append(text + tail)
    return tuple(parts)


def copy_config(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: copy_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_config(v) for v in value]
    return value


def _default_channel(template: Template) -> dict[str, Any]:
    return {"template_type": 1, "template_default_config": {}}
