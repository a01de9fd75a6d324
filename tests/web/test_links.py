"""Chat and mail link to the public page when [web] base_url is set, and only to a public page."""
from __future__ import annotations

from pathlib import Path

from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeClock

MAIL = {"host": "smtp.invalid", "announce_to": "dev-planning@example.org", "preapprovers": "release@example.org"}
BASE = "https://downtimes.example.org"


def test_the_announcement_and_show_link_to_the_page_once_it_is_public(tmp_path: Path) -> None:
    chat = Chat(make_config(tmp_path, web={"base_url": BASE + "/"}, mail=MAIL), FakeClock(NOW))
    try:
        chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
        assert not any(BASE in line for line in chat.say("alice", "!downtime show 1"))  # a proposal: not public
        chat.say("carol", "!downtime approve 1")
        drafts = list(chat.mailer.sent)
        assert drafts and all(BASE not in m.body for m in drafts)  # the draft links to no page (none yet)
        announced = chat.say("carol", "!downtime announce 1")
        link = f"{BASE}/downtimes/1"
        assert any(link in line and "announced" in line for line in announced), announced
        assert f"#ci Page: {link}" in chat.say("alice", "!downtime show 1")
        announcement = [m for m in chat.mailer.sent if m.to == ("dev-planning@example.org",)]
        assert announcement and f"Details, and the downtime for your calendar: {link}" in announcement[-1].body
    finally:
        chat.close()


def test_without_base_url_nothing_links_to_a_page(tmp_path: Path) -> None:
    chat = Chat(make_config(tmp_path, mail=MAIL), FakeClock(NOW))
    try:
        chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
        chat.say("carol", "!downtime approve 1")
        lines = chat.say("carol", "!downtime announce 1") + chat.say("alice", "!downtime show 1")
        assert not any("/downtimes/1" in line or "Page:" in line for line in lines)
        assert all("for your calendar" not in m.body for m in chat.mailer.sent)
    finally:
        chat.close()


def test_with_the_web_server_off_nothing_links_to_a_page(tmp_path: Path) -> None:
    chat = Chat(make_config(tmp_path, web={"base_url": BASE, "listen": ""}), FakeClock(NOW))
    try:
        chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
        chat.say("carol", "!downtime approve 1")
        assert not any(BASE in line for line in chat.say("carol", "!downtime announce 1"))
    finally:
        chat.close()
