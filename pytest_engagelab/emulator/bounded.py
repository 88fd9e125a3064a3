"""A thread-safe, bounded list: the journal of sent messages and the request log share it."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

__all__ = ["BoundedLog"]

T = TypeVar("T")


class BoundedLog(Generic[T]):
    """Entries oldest first.  Past ``limit`` entries the oldest are dropped (``dropped``
    counts them), so a test that sends 100,000 messages does not keep 100,000 requests in
    memory; ``total`` counts every entry since the last :meth:`clear`.

    An entry may be appended as atoms (:meth:`append_compact`: a plain tuple of strings
    and numbers, which the garbage collector stops tracking) and is built into its
    object by ``_build`` when first read; the built object then replaces it, so every
    read gives the same object."""

    def __init__(self, limit: int | None = 10_000) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"journal_limit must be at least 1 or None, not {limit!r}")
        self._lock = threading.Lock()
        self._entries: deque[T | tuple[Any, ...]] = deque(maxlen=limit)
        self.limit = limit
        self.dropped = 0
        self.total = 0

    def append(self, entry: T) -> None:
        with self._lock:
            if self.limit is not None and len(self._entries) == self.limit:
                self.dropped += 1
            self._entries.append(entry)
            self.total += 1

    def append_compact(self, entry: tuple[Any, ...]) -> None:
        """Append ``entry`` as atoms, to be built by ``_build`` when first read."""
        with self._lock:
            if self.limit is not None and len(self._entries) == self.limit:
                self.dropped += 1
            self._entries.append(entry)
            self.total += 1

    def _build(self, entry: tuple[Any, ...]) -> T:
        """The object an entry appended as atoms describes."""
        raise NotImplementedError

    def snapshot(self) -> list[T]:
        with self._lock:
            entries = self._entries
            kept: list[Any] = list(entries)
            built = False
            for index, entry in enumerate(kept):
                if type(entry) is tuple:
                    kept[index] = self._build(entry)
                    built = True
            if built:  # keep what was built: the next read gives the same objects
                entries.clear()
                entries.extend(kept)
            return kept

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.dropped = 0
            self.total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[T]:
        return iter(self.snapshot())
