"""Checking a template definition against ``template.json``: ``POST /v1/template-configs``.

:func:`template_from_config` checks a body against EngageLab's OpenAPI document for
templates and the prose limits its descriptions state, and builds the
:class:`~pytest_engagelab.emulator.templates.Template`.  A rule broken answers 3002
naming the field (:class:`~pytest_engagelab.emulator.templates.TemplateConfigError`),
a strategy naming a channel whose config is missing 3003
(:class:`~pytest_engagelab.emulator.templates.TemplateRuleError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from pytest_engagelab.emulator.model import LANGUAGES, TEMPLATE_ID_MAX
from pytest_engagelab.emulator.templates import (
    CHANNELS,
    DEFAULT_CONTENT,
    DESCRIPTION_MAX,
    PWA_URL_BASE,
    SMS_SUB_TYPES,
    VARIABLE,
    Template,
    TemplateConfigError,
    TemplateRuleError,
    copy_config,
    parse_strategy,
)

__all__ = ["template_from_config"]



def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TemplateConfigError(f"{name} must be an object, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _string(
    config: dict[str, Any],
    key: str,
    name: str,
    *,
    required: bool = False,
    low: int = 0,
    high: int | None = None,
) -> str | None:
    if key not in config or config[key] is None:
        if required:
            raise TemplateConfigError(f"{name} is required")
        return None
    value = config[key]
    if not isinstance(value, str):
        raise TemplateConfigError(f"{name} must be a string, not {_kind(value)}")
    if required and not value.strip():
        raise TemplateConfigError(f"{name} must not be empty")
    if len(value) < low or (high is not None and len(value) > high):
        limit = f"{low} to {high}" if low else f"at most {high}"
        raise TemplateConfigError(f"{name} must be {limit} characters long, not {len(value)}")
    return value


def _integer(
    config: dict[str, Any], key: str, name: str, allowed: range | tuple[int, ...]
) -> int:
    if key not in config or config[key] is None:
        raise TemplateConfigError(f"{name} is required")
    value = config[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TemplateConfigError(f"{name} must be an integer, not {_kind(value)}")
    if value not in allowed:
        if isinstance(allowed, range):
            what = f"{allowed.start}..{allowed.stop - 1}"
        else:
            what = " or ".join(str(v) for v in allowed)
        raise TemplateConfigError(f"{name} must be {what}, not {value}")
    return value


def _optional_object(config: dict[str, Any], key: str, name: str) -> dict[str, Any] | None:
    value = config.get(key)
    return None if value is None else _object(value, name)


def _check_default_only(config: dict[str, Any], channel: str) -> None:
    # whatsapp_config and voice_config: "only the default template is supported, so the
    # value is fixed at 1" (template.json).
    name = f"{channel}_config"
    _integer(config, "template_type", f"{name}.template_type", (1,))
    _optional_object(config, "template_default_config", f"{name}.template_default_config")


@dataclass
class _ChannelChoice:
    carries_code: bool
    content: str | None
    by_language: dict[str, str] = field(default_factory=dict)


def _check_sms(config: dict[str, Any]) -> _ChannelChoice:
    template_type = _integer(config, "template_type", "sms_config.template_type", (1, 2))
    _optional_object(config, "template_default_config", "sms_config.template_default_config")
    if template_type == 1:
        return _ChannelChoice(carries_code=True, content=None)
    custom = config.get("template_custom_config")
    if custom is None:
        hint = (
            " (custom_sub_type and custom_content go inside it)"
            if "custom_content" in config
            else ""
        )
        raise TemplateConfigError(
            f"sms_config.template_custom_config is required for template_type 2{hint}"
        )
    custom = _object(custom, "sms_config.template_custom_config")
    prefix = "sms_config.template_custom_config"
    sub_type = _string(custom, "custom_sub_type", f"{prefix}.custom_sub_type", required=True)
    if sub_type not in SMS_SUB_TYPES:
        raise TemplateConfigError(
            f"{prefix}.custom_sub_type must be one of {', '.join(SMS_SUB_TYPES)}, not {sub_type!r}"
        )
    content = _string(custom, "custom_content", f"{prefix}.custom_content", required=True)
    assert content is not None
    _string(custom, "custom_country_codes", f"{prefix}.custom_country_codes")
    if sub_type == "authentication" and not _has_code(content):
        raise TemplateConfigError(
            f"{prefix}.custom_content must contain {{{{code}}}} for authentication templates"
        )
    return _ChannelChoice(carries_code=sub_type == "authentication", content=content)


def _has_code(content: str) -> bool:
    return any(m.group(1) == "code" for m in VARIABLE.finditer(content))


def _check_email(config: dict[str, Any], is_address: Any) -> _ChannelChoice:
    _string(config, "template_name", "email_config.template_name", required=True)
    customs = config.get("template_custom_configs")
    if customs is None:
        return _ChannelChoice(carries_code=True, content=None)
    if not isinstance(customs, list):
        raise TemplateConfigError(
            f"email_config.template_custom_configs must be an array, not {_kind(customs)}"
        )
    contents: dict[str, str] = {}
    for index, item in enumerate(customs):
        name = f"email_config.template_custom_configs[{index}]"
        entry = _object(item, name)
        language = _string(entry, "language", f"{name}.language", required=True)
        if language not in LANGUAGES:
            raise TemplateConfigError(
                f"{name}.language {language!r} is not supported; use one of: "
                f"{', '.join(sorted(LANGUAGES))}"
            )
        if language in contents:
            raise TemplateConfigError(f"{name}.language {language!r} is given twice")
        _string(entry, "pre_from_name", f"{name}.pre_from_name")
        sender = _string(entry, "pre_from_mail", f"{name}.pre_from_mail", required=True)
        if not is_address(sender):
            raise TemplateConfigError(f"{name}.pre_from_mail {sender!r} is not an e-mail address")
        _string(entry, "pre_subject", f"{name}.pre_subject", required=True)
        content = _string(entry, "template_content", f"{name}.template_content", required=True)
        assert content is not None
        param_map = _optional_object(entry, "pre_param_map", f"{name}.pre_param_map")
        for key, value in (param_map or {}).items():
            if not isinstance(value, str):
                raise TemplateConfigError(
                    f"{name}.pre_param_map.{key} must be a string, not {_kind(value)}"
                )
        contents[language] = content
    if not contents:
        return _ChannelChoice(carries_code=True, content=None)
    content = contents.get("default", next(iter(contents.values())))
    carries_code = any(_has_code(c) for c in contents.values())
    return _ChannelChoice(carries_code=carries_code, content=content, by_language=contents)


def _check_pwa(config: dict[str, Any]) -> str | None:
    platform = _string(config, "pwa_platform", "pwa_config.pwa_platform")
    code = _string(config, "pwa_code", "pwa_config.pwa_code")
    if not code:
        return None
    return f"{PWA_URL_BASE}/{quote(platform or 'default', safe='')}/{quote(code, safe='')}"


_DOCUMENTED: Final = (
    "template_id",
    "description",
    "send_channel_strategy",
    "brand_name",
    "verify_code_config",
    "whatsapp_config",
    "sms_config",
    "voice_config",
    "email_config",
    "pwa_config",
)


def template_from_config(config: Any, *, is_address: Any = None) -> Template:
    """Check a ``POST /v1/template-configs`` body against template.json and its prose.

    Raises :class:`TemplateConfigError` (3002) naming the field for a missing,
    mistyped or out-of-range field, and :class:`TemplateRuleError` (3003) when the
    strategy names a channel whose config is missing.  ``is_address`` checks an
    e-mail address (``pre_from_mail``); by default anything with one ``@`` passes.
    """
    if is_address is None:
        is_address = _looks_like_address
    body = _object(config, "the template definition")
    template_id = _string(
        body, "template_id", "template_id", required=True, high=TEMPLATE_ID_MAX
    )
    assert template_id is not None
    description = _string(body, "description", "description", high=DESCRIPTION_MAX) or ""
    strategy = parse_strategy(body.get("send_channel_strategy"))
    brand_name = _string(body, "brand_name", "brand_name", low=2, high=10)

    code_choices: list[tuple[str, bool]] = []
    contents: dict[str, str | None] = {}
    by_language: dict[str, str] = {}
    for channel in CHANNELS:
        key = f"{channel}_config"
        if body.get(key) is None:
            continue
        channel_config = _object(body[key], key)
        if channel in ("whatsapp", "voice"):
            _check_default_only(channel_config, channel)
            choice = _ChannelChoice(carries_code=True, content=None)
        elif channel == "sms":
            choice = _check_sms(channel_config)
        else:
            choice = _check_email(channel_config, is_address)
        if channel in strategy:
            code_choices.append((channel, choice.carries_code))
            contents[channel] = choice.content
            by_language.update(choice.by_language)
    pwa = _optional_object(body, "pwa_config", "pwa_config")
    pwa_url = _check_pwa(pwa) if pwa is not None else None

    raw_code_config = body.get("verify_code_config")
    code_type, code_length, ttl_minutes = 1, 6, 5
    if raw_code_config is not None:
        code_config = _object(raw_code_config, "verify_code_config")
        code_type = _integer(
            code_config, "verify_code_type", "verify_code_config.verify_code_type", range(1, 8)
        )
        code_length = _integer(
            code_config, "verify_code_len", "verify_code_config.verify_code_len", range(4, 11)
        )
        ttl_minutes = _integer(
            code_config, "verify_code_ttl", "verify_code_config.verify_code_ttl", range(1, 11)
        )
        if "whatsapp" in strategy and ttl_minutes not in (1, 5, 10):
            raise TemplateConfigError(
                "verify_code_config.verify_code_ttl must be 1, 5 or 10 when the strategy has "
                f"whatsapp, not {ttl_minutes}"
            )

    missing = [c for c in strategy if body.get(f"{c}_config") is None]
    if missing:
        names = ", ".join(f"{c}_config" for c in missing)
        strategy_text = "|".join(strategy)
        raise TemplateRuleError(
            f"not contains any channel config: send_channel_strategy {strategy_text!r} "
            f"needs {names}"
        )
    carriers = [channel for channel, carries in code_choices if carries]
    if carriers and raw_code_config is None:
        raise TemplateConfigError(
            "verify_code_config is required: the template carries a verification code "
            f"({', '.join(carriers)})"
        )
    content = next((c for c in (contents.get(ch) for ch in strategy) if c), DEFAULT_CONTENT)
    documented = {k: copy_config(body[k]) for k in _DOCUMENTED if body.get(k) is not None}
    return Template(
        template_id=template_id,
        strategy=strategy,
        code_length=code_length,
        ttl=ttl_minutes * 60,
        code_type=code_type,
        content=content,
        contents=by_language,
        brand_name="EngageLab" if brand_name is None else brand_name,
        description=description,
        verification=bool(carriers),
        config=documented,
        pwa_url=pwa_url,
    )


def _looks_like_address(value: str) -> bool:
    return value.count("@") == 1 and all(value.split("@"))
