"""The HTML pages (/, /downtimes/<id>, /trees) of a bot whose downtime is scripted in chat."""
from __future__ import annotations

import datetime as dt
import re

from tests.web.conftest import WebChat

UTC = dt.timezone.utc
HTML = {"Accept": "text/html,application/xhtml+xml"}


def propose(web: WebChat, wording: str = "Upgrade hg.mozilla.org", when: str = "2026-12-05 14:00 UTC") -> None:
    web.say("alice", f"!downtime propose {when} for 2h bug 123456 -- {wording}")


def announce(web: WebChat, downtime: int = 1) -> None:
    web.say("carol", f"!downtime approve {downtime}")
    web.say("carol", f"!downtime announce {downtime}")


def bars(page: str) -> list[str]:
    return re.findall(r'<rect class="bar[^"]*" data-downtime="(\d+)"', page)


def test_a_proposed_downtime_is_not_on_the_page(web: WebChat) -> None:
    propose(web)
    page = web.get("/").text
    assert bars(page) == []
    assert "Upgrade hg.mozilla.org" not in page
    assert web.get("/downtimes/1").status == 404
