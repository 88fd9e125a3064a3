"""The cassette kit's exceptions (a file that cannot be used, a request it cannot answer) and
its warning (a cassette recorded too long ago)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


class CassetteError(Exception):
    """A cassette cannot be read or written; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"pytest-engagelab: cassette {os.fspath(path)}: {problem}")
        self.path = Path(path)
        self.problem = problem


class CassetteMiss(Exception):
    """A request the cassette does not answer, in a record mode that does not record it.

    Raised from inside httpx's transport (it is not an ``httpx.HTTPError``, so
    no retry loop swallows it); the message names the cassette file, the
    request, the closest recorded request and the command that records it.
    """


class StaleCassetteWarning(pytest.PytestWarning):
    """A replayed cassette was recorded longer ago than ``engagelab_cassette_max_age``;
    the message says when and gives the command that records it again."""
