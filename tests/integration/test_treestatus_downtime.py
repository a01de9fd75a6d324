"""A whole downtime through the bot with [trees] backend = treestatus, against the local
lando-api-contract server, through the real HTTP client."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeClock
from adapters.treestatus import TreestatusClient
from tests.conftest import Chat, make_config
from tests.plugins.test_trees_transcript import announce
from tests.servers.treestatus import APPROVAL, BUSTAGE, TreestatusServer, add_mixed_trees

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
TOKEN = "tok-downtime-integration"
REASON = "Downtime #1: Upgrade hg.mozilla.org (bug 123456)"
TREES = ("autoland", "mozilla-central", "mozilla-beta", "try")


@pytest.fixture
def server() -> Iterator[TreestatusServer]:
    with TreestatusServer(token=TOKEN) as srv:
        add_mixed_trees(srv)
        yield srv


@pytest.fixture
def chat(tmp_path: Path, clock: FakeClock, server: TreestatusServer) -> Iterator[Chat]:
    config = make_config(tmp_path, trees={"backend": "treestatus", "treestatus_url": server.url})
    # The real client, with its sleeps recorded instead of slept.
    client = TreestatusClient(server.url, TOKEN, timeout=5, retries=2, sleep=lambda _: None)
    harness = Chat(config, clock, treestatus=client)
    yield harness
    harness.close()


def snapshot(server: TreestatusServer) -> dict[str, tuple[str, str, list[str]]]:
    return {n: (s["status"], s["reason"], s["tags"]) for n in TREES for s in [server.tree_state(n)]}


def writes(server: TreestatusServer) -> list[tuple[str, str]]:
    """The writes Treestatus received (retries of a failed one included)."""
    return [(r.method, r.path) for r in server.requests if r.method in ("PATCH", "DELETE")]


def start(chat: Chat) -> list[str]:
    announce(chat)
    chat.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=UTC))
    return chat.say("carol", "!downtime start 1")


def test_a_downtime_closes_the_trees_with_its_reason_and_tag_and_restores_them_exactly(
    chat: Chat, server: TreestatusServer
) -> None:
    before = snapshot(server)

    out = start(chat)

    (entry,) = server.stack_entries()
    assert (entry["status"], entry["reason"]) == ("closed", REASON)
    assert {n: s for n, s in snapshot(server).items()} == {n: ("closed", REASON, ["planned"]) for n in TREES}
    assert any(line.endswith(f"closed for downtime #1 (tree change 1, Treestatus change {entry['id']}).") for line in out)
    assert chat.say("bob", "!trees mozilla-central") == [
        "#ci From Treestatus:", f"#ci mozilla-central: closed ({REASON})"]

    out = chat.say("carol", "!downtime end 1")

    assert snapshot(server) == before
    assert server.stack_entries() == []
    assert any(line.startswith("#ci carol: Treestatus: downtime #1 is over; restored ") for line in out)
    assert not any("Left alone" in line for line in out)


def test_a_sheriffs_change_during_the_downtime_is_respected_at_the_end(chat: Chat, server: TreestatusServer) -> None:
    before = snapshot(server)
    start(chat)
    server.set_tree("autoland", "open", "reopened early by the sheriff")

    out = chat.say("carol", "!downtime end 1")

    assert any(line.endswith("Left alone, changed during the downtime: autoland.") for line in out)
    assert snapshot(server)["autoland"] == ("open", "reopened early by the sheriff", [])
    assert {n: s for n, s in snapshot(server).items() if n != "autoland"} == {
        n: s for n, s in before.items() if n != "autoland"}


def test_treestatus_failing_and_recovering_loses_nothing_and_doubles_nothing(
    chat: Chat, server: TreestatusServer
) -> None:
    before = snapshot(server)
    server.down("503")
    out = start(chat)
    assert not any("Treestatus:" in line for line in out)
    assert server.stack_entries() == []
    server.up()
    # The close is applied but its answer is lost; then the restore's answer is lost too.
    server.fail_with(500, 1, methods={"PATCH"}, after_apply=True)
    chat.deliver()
    assert len(server.stack_entries()) == 1
    server.fail_with(500, 1, methods={"DELETE"}, after_apply=True)

    out = chat.say("carol", "!downtime end 1")

    assert snapshot(server) == before
    assert server.stack_entries() == []
    closes = [w for w in writes(server) if w == ("PATCH", "/trees")]
    restores = [r for r in server.requests if r.method == "DELETE" and r.query.get("revert") == ["1"]]
    assert len(closes) == 1  # the lost answer was found in the stack, not sent again
    assert len(restores) == 2 and restores[1].path == restores[0].path  # the retry found it gone (404): done
    assert sum(1 for line in out if line.startswith("#ci carol: Treestatus: downtime #1 is over")) == 1


def test_a_tree_reopened_early_in_treestatus_leaves_the_downtimes_change_off_the_stack(
    chat: Chat, server: TreestatusServer
) -> None:
    start(chat)
    (ours,) = server.stack_entries()
    # The sheriff reopens autoland in Treestatus' UI, which remembers the change.
    TreestatusClient(server.url, TOKEN, sleep=lambda _: None).set_status(
        ["autoland"], "open", "reopened early by the sheriff", remember=True)

    out = chat.say("carol", "!downtime end 1")

    assert any(line.endswith("Left alone, changed during the downtime: autoland.") for line in out)
    assert ours["id"] not in [entry["id"] for entry in server.stack_entries()]
    assert snapshot(server)["autoland"] == ("open", "reopened early by the sheriff", [])
    assert snapshot(server)["mozilla-central"][0] == "closed"  # its bustage closure from before
    # Only the closures from before the downtime stay: autoland is open.
    (stays,) = [line for line in out if line.startswith("#ci After downtime #1")]
    assert "mozilla-central stays closed" in stays and "autoland" not in stays


def test_the_tree_open_says_the_restore_follows_and_a_tree_that_stays_closed_is_named_when_it_is_done(
    chat: Chat, server: TreestatusServer
) -> None:
    start(chat)
    server.set_tree("autoland", "closed", "bustage on linux64", ["checkin_test"])

    out = chat.say("carol", "!downtime end 1")

    tree_open = next(line for line in out if line.startswith("#developers sam: TREE OPEN"))
    assert "The trees are being restored in Treestatus; a tree that stays closed under someone else's closure is " \
           "named here when that is done." in tree_open
    stays = (
        "After downtime #1: Treestatus restored its trees; autoland stays closed: bustage on linux64; mozilla-beta "
        f"stays approval required: {APPROVAL}; mozilla-central stays closed: {BUSTAGE}."
    )
    assert f"#developers {stays}" in out and f"#ci {stays}" in out
    assert snapshot(server)["autoland"] == ("closed", "bustage on linux64", ["checkin_test"])
