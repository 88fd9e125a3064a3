"""The vcrpy side of cassettes: one :class:`ActiveCassette` per marked test.

Imported only when a marked test runs, so loading the plugin never imports vcrpy.

Why this module is long: everything that lives exactly as long as one test's cassette
is here -- the indexed vcrpy cassette, its start, stop and save (with the review and
the staleness check), the miss message, and the log scrubbing active meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import shlex
import traceback
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import vcr  # type: ignore[import-untyped]
from vcr.cassette import Cassette, CassetteContextDecorator  # type: ignore[import-untyped]
from vcr.record_mode import RecordMode  # type: ignore[import-untyped]

from pytest_engagelab.cassettes.credentials import Credentials
from pytest_engagelab.cassettes.errors import CassetteError, CassetteMiss
from pytest_engagelab.cassettes.files import (
    AtomicPersister,
    gc_paused,
    read_cassette,
    recorded_at,
    recorded_on,
)
from pytest_engagelab.cassettes.matching import json_body, request_key
from pytest_engagelab.cassettes.scrub import Scrubber
from pytest_engagelab.cassettes.settings import CassetteSettings

if TYPE_CHECKING:
    from pytest_engagelab.cassettes.reports import CassetteReview

__all__ = ["ActiveCassette"]

#: vcrpy's record mode for each of ours (``rewrite`` = ``all`` on a cassette that starts empty).
_VCR_MODES: Final = {
    "none": "none",
    "once": "once",
    "new_episodes": "new_episodes",
    "all": "all",
    "rewrite": "all",
}
_MATCH_ON: Final = ("method", "path", "engagelab_json_body")
_MATCHER_NAMES: Final = {"json_body": "the JSON body", "path": "the path", "method": "the method"}


class _EngageLabCassette(Cassette):  # type: ignore[misc]
    """vcrpy's cassette, indexed, with a miss reported as :class:`CassetteMiss`.

    vcrpy compares a request with every recorded interaction, through every
    matcher, each time it looks for an answer: replaying n requests costs n^2
    comparisons.  Here every interaction is filed under :func:`request_key` when it
    is loaded or recorded (the key is equal exactly when the ``method``, ``path``
    and JSON body matchers all pass), and a request looks up its key: a
    dictionary look-up and a cursor past the answers already played.
    """

    engagelab_context: ActiveCassette | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._engagelab_index: dict[Hashable, list[int]] = {}
        self._engagelab_cursor: dict[Hashable, int] = {}
        self._engagelab_memo: dict[int, tuple[Any, Hashable | None]] = {}
        self._engagelab_loading = False
        super().__init__(*args, **kwargs)

    # -- the index -----------------------------------------------------------------------

    def _load(self) -> None:
        self._engagelab_loading = True
        try:
            with gc_paused():
                super()._load()
        finally:
            self._engagelab_loading = False

    def append(self, request: Any, response: Any) -> None:
        count = len(self.data)
        if self._engagelab_loading:
            # A loaded answer is a fresh object nobody else holds: scrubbed (in place) as
            # vcrpy would, without vcrpy's defensive deep copy of every response.
            request = self._before_record_request(request)
            response = self._before_record_response(response) if request else None
            if response is None:
                return
            self.data.append((request, response))
        else:
            super().append(request, response)
        if len(self.data) > count:  # filed under the key of the request as stored
            self._engagelab_index.setdefault(request_key(self.data[count][0]), []).append(count)

    def _engagelab_key(self, request: Any) -> Hashable | None:
        """The key of a live request, after ``before_record_request`` (the scrubber), which
        vcrpy applies on each of its calls: remembered for the few calls one request makes."""
        memo = self._engagelab_memo
        known = memo.get(id(request))
        if known is not None and known[0] is request:
            return known[1]
        filtered = self._before_record_request(request)
        key = request_key(filtered) if filtered else None
        if len(memo) > 32:
            memo.clear()
        memo[id(request)] = (request, key)
        return key

    def _responses(self, request: Any) -> Iterator[tuple[int, Any]]:
        # The answers recorded for this key, from the first one not played yet (vcrpy plays
        # each answer once); ``responses_of`` therefore lists only answers not played yet.
        key = self._engagelab_key(request)
        if key is None:
            return
        indices = self._engagelab_index.get(key, [])
        position = 0
        if not self.allow_playback_repeats:
            position = self._engagelab_cursor.get(key, 0)
            while position < len(indices) and self.play_counts[indices[position]] > 0:
                position += 1
            self._engagelab_cursor[key] = position
        for index in range(position, len(indices)):
            yield indices[index], self.data[indices[index]][1]

    def can_play_response_for(self, request: Any) -> bool:
        # vcrpy's test, without scrubbing the request twice
        if self._engagelab_key(request) is None:
            return False
        return bool(
            request in self
            and self.record_mode != RecordMode.ALL
            and (self.rewound or self.allow_playback_repeats)
        )

    def rewind(self) -> None:
        super().rewind()
        self._engagelab_cursor.clear()

    def _rerecorded_interactions(self) -> list[tuple[Any, Any]]:
        # vcrpy's "all": re-recorded interactions replace the loaded ones they match
        # (found by key here, not by comparing every pair).
        loaded_count = getattr(self, "_loaded_count", None)
        if not isinstance(loaded_count, int):  # pragma: no cover - another vcrpy
            return list(super()._rerecorded_interactions())
        loaded, recorded = self.data[:loaded_count], self.data[loaded_count:]
        if self.drop_unused_requests:
            return list(recorded)
        recorded_keys = {request_key(request) for request, _ in recorded}
        kept = [(r, answer) for r, answer in loaded if request_key(r) not in recorded_keys]
        return kept + list(recorded)

    def engagelab_keeps_loaded(self) -> bool:
        """Whether saving now keeps interactions that were loaded from the file."""
        loaded_count = getattr(self, "_loaded_count", len(self._old_interactions))
        if self.record_mode != RecordMode.ALL:
            return bool(loaded_count)
        return len(self._rerecorded_interactions()) > len(self.data) - loaded_count

    # -- a miss ----------------------------------------------------------------------------

    def filter_request(self, request: Any) -> Any:
        # vcrpy calls this only for a request the cassette cannot answer while
        # write-protected, right before it would raise its own error.
        filtered = super().filter_request(request)
        context = self.engagelab_context
        if filtered and context is not None:
            raise CassetteMiss(context.miss_message(self, filtered))
        return filtered


class ActiveCassette:
    """The cassette of one test: where it is, how it records, and who talks through it.

    ``credentials`` are what ``otp_client`` uses: the real ones from the
    environment when recording, the emulator's placeholders when replaying.

    :meth:`start` loads it and patches httpx, :meth:`stop` unpatches (at the end of
    the test's teardown), :meth:`save` writes it -- called by the plugin only once
    the test, its setup and its whole teardown passed.
    """

    def __init__(
        self,
        settings: CassetteSettings,
        path: Path,
        *,
        nodeid: str,
        replay_credentials: Credentials,
        display_path: str | None = None,
    ) -> None:
        self.settings = settings
        self.path = path
        self.nodeid = nodeid
        self.record_mode = settings.record_mode
        self.credentials = settings.recording or replay_credentials
        self.display_path = display_path or str(path)
        self.scrubber = Scrubber(
            self.credentials.dev_key,
            self.credentials.dev_secret,
            extra_secrets=settings.extra_secrets,
            redact_recipients=settings.redact_recipients,
            credentials_are_secret=settings.recording is not None,
        )
        header = {"source": "recorded", "base_url": self.scrubber.text(self.credentials.base_url)}
        self._persister = AtomicPersister(
            scrubber=self.scrubber,
            ignore_existing=self.record_mode == "rewrite",
            header=header,
        )
        config = vcr.VCR(
            record_mode=_VCR_MODES[self.record_mode],
            match_on=_MATCH_ON,
            before_record_request=self.scrubber.request,
            before_record_response=self.scrubber.response,
            decode_compressed_response=True,
            record_on_exception=False,
        )
        config.register_matcher("engagelab_json_body", json_body)
        config.register_persister(self._persister)
        getter = functools.partial(config.get_merged_config, path=str(path))
        self._context = CassetteContextDecorator(_EngageLabCassette, getter)
        self.cassette: Any = None
        self._finished: Any = None
        self._logs: _ScrubbedLogs | None = None
        #: Whether :meth:`start` loaded the cassette and patched httpx.
        self.started = False

    def __repr__(self) -> str:
        return f"ActiveCassette(path={self.display_path!r}, record_mode={self.record_mode!r})"

    @property
    def recording(self) -> bool:
        """Whether requests the cassette lacks go to the real endpoint."""
        return self.record_mode != "none"

    def start(self) -> None:
        """Load the cassette and patch httpx (raises ``CassetteError`` for a broken file);
        from now on log records are scrubbed as they are made."""
        self.cassette = self._context.__enter__()
        self.cassette.engagelab_context = self
        self.started = True
        self._logs = _ScrubbedLogs(self.scrubber)
        self._logs.install()

    def stop(self) -> None:
        """Unpatch httpx and stop scrubbing log records; write nothing (see :meth:`save`)."""
        cassette = self.cassette
        if self._logs is not None:
            self._logs.remove()
            self._logs = None
        if cassette is None:
            return
        self.cassette = None
        self._finished = cassette
        held = RuntimeError("pytest-engagelab writes a cassette only after a passing teardown")
        self._context.__exit__(RuntimeError, held, None)  # record_on_exception=False: no save

    def discard(self) -> None:
        """Forget what the test recorded: it, or its teardown, did not pass."""
        self._finished = None

    def stale_message(
        self, max_age: datetime.timedelta | None, today: datetime.date | None = None
    ) -> str | None:
        """The warning for a replayed cassette recorded more than ``max_age`` ago (by the
        ``recorded_at`` date in the file), or ``None``.  Cassettes that do not say when
        they were recorded (written before 0.2) are not judged."""
        if max_age is None or self.cassette is None or self.record_mode in ("all", "rewrite"):
            return None
        day = recorded_date(self._persister.loaded_header)
        if day is None:
            return None
        today = today or datetime.datetime.now(datetime.UTC).date()
        age = today - day
        if age <= max_age:
            return None
        return (
            f"pytest-engagelab: cassette {self.display_path} was recorded on {day.isoformat()}, "
            f"{age.days} days ago, longer ago than engagelab_cassette_max_age "
            f"({_age_text(max_age)}); EngageLab may answer differently now. Record it again "
            f"(needs ENGAGELAB_DEV_KEY and ENGAGELAB_DEV_SECRET):\n"
            f"  pytest {shlex.quote(self.nodeid)} --engagelab-record-mode=rewrite"
        )

    def save(self) -> CassetteReview | None:
        """Write what the test recorded (atomically, scrubbed); return the review of what
        changed in EngageLab's answers, or ``None`` when nothing was written.

        A ``rewrite`` that recorded nothing (the endpoint was down and the test
        passed anyway) keeps the cassette that was there.
        """
        from pytest_engagelab.cassettes.reports import CassetteReview, review_recording

        cassette, self._finished = self._finished, None
        if cassette is None or not self.recording:
            return None
        old = _interactions_in(self.path)
        if not cassette.dirty:
            if self.record_mode == "rewrite" and old:
                return CassetteReview(
                    self.display_path,
                    "kept",
                    interactions=len(old),
                    note=f"rewrite recorded nothing; the old cassette ({len(old)} interactions) "
                    "was kept",
                )
            return None
        header = dict(self._persister.header)
        keeps = cassette.engagelab_keeps_loaded() and self.record_mode != "rewrite"
        previous = self._persister.loaded_header.get("recorded_at")
        if not keeps:
            header["recorded_at"] = recorded_on()
        elif previous is not None:
            header["recorded_at"] = str(previous)
        self._persister.header = header
        cassette._save()
        saved = self._persister.saved
        if saved is None:  # pragma: no cover - vcrpy saved nothing
            return None
        return review_recording(self.display_path, old, saved["interactions"])

    # -- the miss message --------------------------------------------------------------

    def miss_message(self, cassette: Any, request: Any) -> str:
        """What a test reads when the cassette has no answer for ``request`` (scrubbed)."""
        similar = cassette.find_requests_with_most_matches(request)
        exists = len(cassette.data) > 0
        if not exists:
            why = "the cassette does not exist" if not self.path.exists() else "it is empty"
        elif similar and not similar[0][2]:
            why = "its matching interaction was already played (each plays once)"
        else:
            why = "no recorded interaction matches it"
        if self.record_mode == "none":
            mode_text = "record mode 'none' only replays"
        else:
            mode_text = f"record mode {self.record_mode!r} does not add to an existing cassette"
        lines = [
            f"pytest-engagelab: cassette {self.display_path} has no answer for this request: "
            f"{why}; {mode_text}.",
            f"  request:          {_describe(request)}",
        ]
        if similar:
            closest, _succeeded, failed = similar[0]
            lines.append(f"  closest recorded: {_describe(closest)}")
            for name, difference in failed:
                name = _MATCHER_NAMES.get(name, name)
                text = " ".join(str(difference or "").split())
                lines.append(f"    differs in {name}: {text}" if text else f"    differs in {name}")
        elif exists:
            lines.append("  closest recorded: none (nothing with the same method or path)")
        else:
            lines.append("  closest recorded: none (no recorded interactions)")
        mode = "new_episodes" if exists else "once"
        lines += [
            "To record it against the real endpoint (needs ENGAGELAB_DEV_KEY and "
            "ENGAGELAB_DEV_SECRET), run:",
            f"  pytest {shlex.quote(self.nodeid)} --engagelab-record-mode={mode}",
        ]
        return "\n".join(lines)


def _describe(request: Any) -> str:
    parsed = request.parsed_uri
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return f"{request.method} {target}"
    with contextlib.suppress(ValueError):
        body = json.dumps(json.loads(body), sort_keys=True, ensure_ascii=False)
    if len(body) > 300:
        body = body[:297] + "..."
    return f"{request.method} {target} {body}"


def recorded_date(header: dict[str, Any]) -> datetime.date | None:
    """The ``recorded_at`` date of a cassette's ``engagelab`` header, if it has one."""
    return recorded_at({"engagelab": header})


def _age_text(age: datetime.timedelta) -> str:
    seconds = int(age.total_seconds())
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _interactions_in(path: Path) -> list[dict[str, Any]]:
    """The interactions of the cassette file at ``path`` as it is now (none when it is
    missing or unreadable)."""
    try:
        interactions: list[dict[str, Any]] = read_cassette(path)["interactions"]
    except (OSError, CassetteError):
        return []
    return interactions


class _ScrubbedLogs:
    """While a cassette is active, every log record is scrubbed as it is made: its
    message (arguments merged in) and its traceback text, so live logging,
    ``--log-file`` and caplog never see a secret (a URL with one in its query
    string, in vcrpy's and httpx's request lines)."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber
        self._previous: Callable[..., logging.LogRecord] | None = None

    def install(self) -> None:
        previous = logging.getLogRecordFactory()
        scrubber = self._scrubber

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: logging reports it when it formats
                return record
            record.msg, record.args = scrubber.report_text(message), None
            if record.exc_info and not record.exc_text:
                text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
                record.exc_text = scrubber.report_text(text)
            return record

        self._previous = previous
        logging.setLogRecordFactory(factory)

    def remove(self) -> None:
        if self._previous is not None:
            logging.setLogRecordFactory(self._previous)
            self._previous = None
