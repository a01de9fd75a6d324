"""Hand-written fakes of the ports (models/ports.py), for unit and plugin tests.

Each records what it was asked (`.sent`, `.calls`) and can be made to fail. Production code
never imports this package (import-linter checks it).
"""
from tests.fakes.bugzilla import FakeBugzilla
from tests.fakes.clock import FakeClock
from tests.fakes.mail import FakeMailer
from tests.fakes.transport import FakeTransport
from tests.fakes.treestatus import FakeTreestatus

__all__ = ["FakeBugzilla", "FakeClock", "FakeMailer", "FakeTransport", "FakeTreestatus"]
