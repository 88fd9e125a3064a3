"""Scrubbing: every form of a secret (and, on request, every recipient) replaced before
anything is written."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any, Final

from pytest_engagelab.emulator.auth import basic_authorization, basic_token
from pytest_engagelab.emulator.recipients import redact_recipients

#: What a recorded ``Authorization`` header made of the recording credentials becomes.
AUTHORIZATION_PLACEHOLDER: Final = "<ENGAGELAB_AUTHORIZATION>"
#: What any other ``Authorization`` header becomes (wrong credentials, another scheme).
OTHER_AUTHORIZATION_PLACEHOLDER: Final = "<REDACTED_AUTHORIZATION>"
_SECRET_PLACEHOLDERS: Final = (
    ("base64(key:secret)", "<ENGAGELAB_BASIC_TOKEN>"),
    ("key:secret", "<ENGAGELAB_KEY:SECRET>"),
    ("secret", "<ENGAGELAB_DEV_SECRET>"),
    ("key", "<ENGAGELAB_DEV_KEY>"),
)


class Scrubber:
    """Removes secrets (and optionally recipients) from requests and responses.

    ``dev_key``/``dev_secret`` are the credentials the test talks with; every
    form of them (the key, the secret, ``key:secret``, its base64 form, each also
    URL- and JSON-escaped) and each of ``extra_secrets`` is replaced by a
    placeholder wherever it occurs: header values, URLs, bodies.  The
    ``Authorization`` header is always replaced as a whole.
    """

    def __init__(
        self,
        dev_key: str,
        dev_secret: str,
        *,
        extra_secrets: Iterable[str] = (),
        redact_recipients: bool = False,
    ) -> None:
        self._authorization = basic_authorization(dev_key, dev_secret)
        named = {
            "key": dev_key,
            "secret": dev_secret,
            "key:secret": f"{dev_key}:{dev_secret}",
            "base64(key:secret)": basic_token(dev_key, dev_secret),
        }
        pairs: list[tuple[str, str]] = [
            (named[name], placeholder) for name, placeholder in _SECRET_PLACEHOLDERS
        ]
        pairs += [(s, "<ENGAGELAB_EXTRA_SECRET>") for s in extra_secrets if s]
        forms: dict[str, str] = {}
        for value, placeholder in pairs:
            for form in _escaped_forms(value):
                forms.setdefault(form, placeholder)
        # Longest first, so that "key:secret" goes before "key" eats part of it.
        self._forms = sorted(forms.items(), key=lambda item: len(item[0]), reverse=True)
        self.redacts_recipients = redact_recipients

    def __repr__(self) -> str:
        return f"Scrubber(secrets={len(self._forms)}, redact_recipients={self.redacts_recipients})"

    def text(self, text: str) -> str:
        """``text`` with every secret (and recipient, if asked) replaced."""
        for secret, placeholder in self._forms:
            if secret in text:
                text = text.replace(secret, placeholder)
        return redact_recipients(text) if self.redacts_recipients else text

    def data(self, data: bytes | str | None) -> bytes | str | None:
        """A body, scrubbed; bytes that are not UTF-8 are scrubbed byte-wise."""
        if data is None:
            return None
        if isinstance(data, str):
            return self.text(data)
        try:
            return self.text(data.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            for secret, placeholder in self._forms:
                data = data.replace(secret.encode("utf-8"), placeholder.encode("utf-8"))
            return data

    def leaks(self, text: str) -> bool:
        """Whether ``text`` still holds a secret (the persister's last check)."""
        return any(secret in text for secret, _ in self._forms)

    def authorization(self, value: str) -> str:
        """The placeholder an ``Authorization`` header value is stored as."""
        if value.strip() == self._authorization:
            return AUTHORIZATION_PLACEHOLDER
        return OTHER_AUTHORIZATION_PLACEHOLDER

    def request(self, request: Any) -> Any:
        """vcrpy's ``before_record_request``: a scrubbed copy of a ``vcr.request.Request``."""
        import copy

        scrubbed = copy.deepcopy(request)
        scrubbed.uri = self.text(scrubbed.uri)
        scrubbed.body = self.data(scrubbed.body)
        headers = {}
        for name, value in scrubbed.headers.items():
            if name.lower() == "authorization":
                headers[name] = self.authorization(str(value))
            else:
                headers[name] = self.text(str(value))
        scrubbed.headers = headers
        return scrubbed

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        """vcrpy's ``before_record_response``: the recorded response dict, scrubbed."""
        headers: dict[str, list[str]] = {}
        for name, values in response.get("headers", {}).items():
            if name.lower() in ("authorization", "www-authenticate", "set-cookie"):
                headers[name] = [OTHER_AUTHORIZATION_PLACEHOLDER for _ in values]
            else:
                headers[name] = [self.text(str(v)) for v in values]
        response["headers"] = headers
        body = response.get("body", {})
        if "string" in body:
            body["string"] = self.data(body["string"])
        return response


_PERCENT_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")
_UNICODE_ESCAPE: Final = re.compile(r"\\u[0-9a-f]{4}")


def _escaped_forms(value: str) -> set[str]:
    """``value`` as it may appear in a request or response: as is, JSON-escaped (with and
    without ``\\uXXXX`` escapes, either case of hex digit, ``/`` as is or as ``\\/``), and
    URL-encoded (``quote`` and ``quote_plus``, ``/`` kept or encoded, percent escapes in
    upper or lower case)."""
    ascii_json = json.dumps(value)[1:-1]
    json_forms = {
        ascii_json,
        _UNICODE_ESCAPE.sub(lambda match: "\\u" + match.group(0)[2:].upper(), ascii_json),
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    json_forms |= {form.replace("/", "\\/") for form in json_forms}
    url_forms = {
        urllib.parse.quote(value),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        urllib.parse.quote_plus(value, safe="/"),
    }
    url_forms |= {_PERCENT_ESCAPE.sub(lambda match: match.group(0).lower(), f) for f in url_forms}
    return {value} | json_forms | url_forms
