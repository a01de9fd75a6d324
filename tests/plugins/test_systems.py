"""!downtime systems, and proposals tagged with the hosts they name or offered for consolidation."""
from __future__ import annotations

from tests.conftest import Chat


def test_a_listed_host_needs_a_coordinated_closure(chat: Chat) -> None:
    assert chat.say("bob", "!downtime systems hg.mozilla.org") == [
        "#ci hg.mozilla.org (firefox source repos, build repos): work on it needs a coordinated tree-closing "
        "downtime with RelEng and IT, and advance notice of the tree closure. Ask CiDuty in #ci."]


def test_the_process_documents_shorthand_names_the_same_host(chat: Chat) -> None:
    assert chat.say("bob", "!downtime systems cruncher.build.m.o")[0].startswith(
        "#ci cruncher.build.mozilla.org (graphs dashboard")


def test_an_unlisted_host_is_said_not_to_need_one(chat: Chat) -> None:
    assert chat.say("bob", "!downtime systems wiki.mozilla.org") == [
        "#ci wiki.mozilla.org is not in the systems registry: work on it does not need a coordinated tree closure "
        "as far as the bot knows; if unsure, ask CiDuty in #ci."]


def test_a_partial_name_matching_one_host_answers_for_it(chat: Chat) -> None:
    assert chat.say("bob", "!downtime systems nagios")[0].startswith("#ci nagios.mozilla.org (monitoring): work on it")


def test_a_partial_name_matching_several_hosts_lists_them(chat: Chat) -> None:
    assert chat.say("bob", "!downtime systems buildbot") == [
        "#ci 'buildbot' matches 2 systems: buildbot-ro-vip.db.scl3.mozilla.com, buildbot-rw-vip.db.scl3.mozilla.com"]


def test_the_whole_list_names_every_host_of_the_process_document(chat: Chat) -> None:
    out = chat.say("bob", "!downtime systems")
    assert len(out) == 17
    assert "#ci tbpl.mozilla.org: build status" in out


def test_a_proposal_naming_a_host_is_tagged_with_it_and_not_with_hosts_it_only_contains(chat: Chat) -> None:
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Reboot mail.build.mozilla.org and hg.m.o")
    show = chat.say("alice", "!downtime show 1")
    assert any(line.endswith("systems: hg.mozilla.org, mail.build.mozilla.org") for line in show)


def test_a_proposal_working_on_the_same_host_is_offered_for_consolidation(chat: Chat) -> None:
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org")
    out = chat.say("ivan", "!downtime propose 2026-12-19 14:00 UTC for 1h -- Reboot hg.mozilla.org for kernel patches")
    assert ("#ci Note: downtime #1 also works on hg.mozilla.org: consolidate RelEng and IT downtimes with "
            "!downtime merge 1 2") in out


def test_a_proposal_overlapping_another_in_time_is_offered_for_consolidation(chat: Chat) -> None:
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org")
    out = chat.say("ivan", "!downtime propose 2026-12-05 15:00 UTC for 2h -- Move the nagios.mozilla.org VM")
    assert ("#ci Note: downtime #1 overlaps it in time (from 2026-12-05 14:00 UTC (06:00 America/Los_Angeles) until 16:00 UTC (08:00 America/Los_Angeles)): consolidate RelEng and IT "
            "downtimes with !downtime merge 1 2") in out


def test_a_proposal_far_from_others_on_other_hosts_gets_no_consolidation_note(chat: Chat) -> None:
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org")
    out = chat.say("ivan", "!downtime propose 2026-12-19 14:00 UTC for 1h -- Move the nagios.mozilla.org VM")
    assert not any("consolidate" in line for line in out)
