"""Templates as the emulator knows them, and the template-configs payload rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["CHANNELS", "DEFAULT_CONTENT", "Template", "TemplateConfigError", "template_from_config"]

CHANNELS: Final = ("whatsapp", "sms", "email", "voice")
DEFAULT_CONTENT: Final = "Your verification code is {{code}}. It expires in {{ttl}} minutes."
_VAR = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
#: The longest validity a code can have, in seconds (366 days).
MAX_TTL: Final = 366 * 86_400


class TemplateConfigError(ValueError):
    """A template definition breaks a documented rule; the message names the field."""


def parse_strategy(strategy: str) -> tuple[str, ...]:
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
    """One OTP template: how codes are made and which channels deliver them.

    ``ttl`` is the code's validity in seconds; ``code_type`` is EngageLab's
    ``verify_code_type`` bitmask (1 digits, 2 lower-case, 4 upper-case letters).
    ``verification`` says whether it is a verification-code template, for which
    /v1/custom-messages requires ``params.code``.
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

    def __post_init__(self) -> None:
        if not isinstance(self.template_id, str) or not self.template_id:
            raise TemplateConfigError("template_id must be a non-empty string")
        if len(self.template_id) > 128:
            raise TemplateConfigError("template_id is longer than 128 characters")
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

    def render(self, code: str, params: dict[str, str]) -> str:
        """The delivered text: ``{{code}}`` and presets filled, unknown variables kept as is."""
        values = {
            "brand_name": self.brand_name,
            "ttl": str(max(1, self.ttl // 60)),
            **params,
            "code": code,
        }
        return _VAR.sub(lambda m: values.get(m.group(1), m.group(0)), self.content)

    def summary(self) -> dict[str, Any]:
        """The row GET /v1/template-configs lists."""
        return {
            "template_id": self.template_id,
            "description": self.description,
            "send_channel_strategy": self.strategy_text,
            "status": 2,
        }

    def full_config(self) -> dict[str, Any]:
        """What GET /v1/template-configs/{id} answers."""
        body: dict[str, Any] = {
            "template_id": self.template_id,
            "description": self.description,
            "send_channel_strategy": self.strategy_text,
            "brand_name": self.brand_name,
            "verify_code_config": {
                "verify_code_type": self.code_type,
                "verify_code_len": self.code_length,
                "verify_code_ttl": max(1, self.ttl // 60),
            },
        }
        body.update({k: v for k, v in self.config.items() if k not in body})
        body["status"] = 2
        return body


def _int_field(config: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = config.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TemplateConfigError(f"verify_code_config.{name} must be an integer {low}..{high}")
    return value


def template_from_config(config: Any) -> Template:
    """Check a POST /v1/template-configs body against the documented rules."""
    if not isinstance(config, dict):
        raise TemplateConfigError("the template definition must be a JSON object")
    template_id = config.get("template_id")
    if not isinstance(template_id, str) or not template_id:
        raise TemplateConfigError("template_id is required and must be a non-empty string")
    description = config.get("description", "")
    if not isinstance(description, str) or len(description) > 255:
        raise TemplateConfigError("description must be a string of at most 255 characters")
    strategy = parse_strategy(config.get("send_channel_strategy"))  # type: ignore[arg-type]
    brand_name = config.get("brand_name", "EngageLab")
    if not isinstance(brand_name, str) or not 2 <= len(brand_name) <= 10:
        raise TemplateConfigError("brand_name must be a string of 2 to 10 characters")
    code_config = config.get("verify_code_config", {})
    if not isinstance(code_config, dict):
        raise TemplateConfigError("verify_code_config must be an object")
    code_type = _int_field(code_config, "verify_code_type", 1, 1, 7)
    code_length = _int_field(code_config, "verify_code_len", 6, 4, 10)
    ttl_minutes = _int_field(code_config, "verify_code_ttl", 5, 1, 10)
    if "whatsapp" in strategy and ttl_minutes not in (1, 5, 10):
        raise TemplateConfigError(
            "verify_code_config.verify_code_ttl must be 1, 5 or 10 when the strategy has whatsapp"
        )
    content = DEFAULT_CONTENT
    sms_config = config.get("sms_config")
    if sms_config is not None:
        if not isinstance(sms_config, dict):
            raise TemplateConfigError("sms_config must be an object")
        if sms_config.get("template_type") == 2:
            custom = sms_config.get("custom_content")
            if not isinstance(custom, str) or not custom:
                raise TemplateConfigError(
                    "sms_config.custom_content is required for template_type 2"
                )
            if sms_config.get("custom_sub_type", "authentication") == "authentication" and (
                "{{code}}" not in custom
            ):
                raise TemplateConfigError(
                    "sms_config.custom_content must contain {{code}} for authentication templates"
                )
            content = custom
    return Template(
        template_id=template_id,
        strategy=strategy,
        code_length=code_length,
        ttl=ttl_minutes * 60,
        code_type=code_type,
        content=content,
        brand_name=brand_name,
        description=description,
        config=dict(config),
    )
