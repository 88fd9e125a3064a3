"""A thread-safe, bounded list: the journal of sent messages and the request log share it."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["BoundedLog"]

T = TypeVar("T")


class BoundedLog(Generic[T]):
    """Entries oldest first.  Past ``limit`` entries the oldest are dropped (``dropped``
    counts them), so a test that sends 100,000 messages does not keep 100,000 requests in
    memory; ``total`` counts every entry since the last :meth:`clear`."""

    def __init__(self, limit: int | None = 10_000) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"journal_limit must be at least 1 or None, not {limit!r}")
        self._lock = threading.Lock()
        self._entries: deque[T] = deque(maxlen=limit)
        self.limit = limit
        self.dropped = 0
        self.total = 0

    def append(self, entry: T) -> None:
        with self._lock:
            if self.limit is not None and len(self._entries) == self.limit:
                self.dropped += 1
            self._entries.append(entry)
            self.total += 1

    def snapshot(self) -> list[T]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.dropped = 0
            self.total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[T]:
        return iter(self.snapshot())
