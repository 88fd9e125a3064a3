"""The emulator core: EngageLab's OTP API as a sans-IO state machine.

Request in, answer out: :meth:`~pytest_engagelab.emulator.core.Emulator.handle` takes a
method, a path, headers and body bytes and returns an
:class:`~pytest_engagelab.emulator.core.EmulatorResponse` (or a
:class:`~pytest_engagelab.emulator.core.Fault` a door must raise).  Nothing in this
package imports an HTTP library, a socket or vcrpy: the doors in
:mod:`pytest_engagelab.doors` carry requests to it and translate what they inject.

The package's ``__init__`` imports nothing, so that the plugin can read
:mod:`~pytest_engagelab.emulator.settings` and :mod:`~pytest_engagelab.emulator.defaults`
at load time without paying for the core.
"""
