"""Doors: thin adapters that carry requests to the emulator core and answers back.

* :mod:`~pytest_engagelab.doors.mock` — ``OTPMock``, in-process, on respx's httpx mocker;
* :mod:`~pytest_engagelab.doors.server` — ``OTPServer``, a loopback HTTP/1.1 server, with
  :mod:`~pytest_engagelab.doors.http` (one connection, parsed by h11) and
  :mod:`~pytest_engagelab.doors.control_api` (the routes under ``/_emulator/``);
* :mod:`~pytest_engagelab.doors.controls` — the assertions, injections and clock every door
  shares;
* :mod:`~pytest_engagelab.doors.delivery` — callback delivery to the test's handler.

A door owns its transport and nothing else: it translates requests into
``Emulator.handle`` calls, and what a test injects (an ``httpx.Response``, an exception)
into what its transport sends.  The package's ``__init__`` imports nothing.
"""
