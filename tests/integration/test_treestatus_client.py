"""The Treestatus client, driven over HTTP against the local lando-api-contract server."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests

from adapters.treestatus import WAITING_MARK, TreestatusClient
from models.ports import TreestatusError, TreestatusUnavailable, TreeState
from tests.servers.treestatus import APPROVAL, BUSTAGE, TreestatusServer, add_mixed_trees

pytestmark = pytest.mark.integration

TOKEN = "tok-3f9a-secret-do-not-log"
DOWNTIME_A = "Planned downtime 7: database failover (bug 1111111)"
DOWNTIME_B = "Planned downtime 8: hg server upgrade (bug 2222222)"


@pytest.fixture
def server() -> Iterator[TreestatusServer]:
    with TreestatusServer(token=TOKEN) as srv:
        add_mixed_trees(srv)
        yield srv


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(server: TreestatusServer, sleeps: list[float]) -> TreestatusClient:
    return TreestatusClient(server.url, TOKEN, timeout=5, sleep=sleeps.append)


def snapshot(server: TreestatusServer) -> dict[str, tuple[str, str, list[str]]]:
    return {
        name: (state["status"], state["reason"], state["tags"])
        for name in ("autoland", "mozilla-central", "mozilla-beta", "try")
        for state in [server.tree_state(name)]
    }


def patches(server: TreestatusServer) -> int:
    return sum(1 for r in server.requests if r.method == "PATCH" and r.path == "/trees")


MIXED = ["autoland", "mozilla-central", "mozilla-beta"]


def test_trees_are_listed_with_status_reason_and_tags(client: TreestatusClient) -> None:
    trees = client.trees()

    assert set(trees) == {"autoland", "mozilla-central", "mozilla-beta", "try"}
    assert trees["mozilla-central"] == TreeState("mozilla-central", "closed", BUSTAGE, ("checkin_test",))
    assert trees["mozilla-beta"].status == "approval required"
    assert client.tree("autoland") == TreeState("autoland", "open", "", ())


def test_an_unknown_tree_is_reported_in_one_line(client: TreestatusClient) -> None:
    with pytest.raises(TreestatusError) as raised:
        client.tree("firefox-nonesuch")

    assert raised.value.status == 404
    assert "No tree firefox-nonesuch found" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_closing_trees_in_mixed_states_records_one_stack_entry_with_each_previous_state(
    client: TreestatusClient, server: TreestatusServer
) -> None:
    stack_id = client.close(MIXED, DOWNTIME_A)

    stack = client.stack()
    assert [entry["id"] for entry in stack] == [stack_id]
    entry = stack[0]
    assert (entry["status"], entry["reason"]) == ("closed", DOWNTIME_A)
    previous = {item["tree"]: item["last_state"] for item in entry["trees"]}
    assert (previous["mozilla-central"]["status"], previous["mozilla-central"]["reason"]) == ("closed", BUSTAGE)
    assert previous["mozilla-central"]["tags"] == ["checkin_test"]
    assert (previous["mozilla-beta"]["status"], previous["mozilla-beta"]["reason"]) == ("approval required", APPROVAL)
    assert previous["autoland"]["status"] == "open"
    assert all(state["current_tags"] == ["planned"] for state in previous.values())
    for name in MIXED:
        assert client.tree(name) == TreeState(name, "closed", DOWNTIME_A, ("planned",))
    assert client.tree("try").status == "open"


def test_restore_brings_each_tree_back_exactly_keeping_the_bustage_reason(
    client: TreestatusClient, server: TreestatusServer
) -> None:
    before = snapshot(server)
    stack_id = client.close(MIXED, DOWNTIME_A)
    assert stack_id is not None

    report = client.restore(stack_id)

    assert snapshot(server) == before
    assert server.tree_state("mozilla-central")["reason"] == BUSTAGE
    assert sorted(report.restored) == sorted(MIXED)
    assert client.stack() == []


@pytest.mark.parametrize("order", ["newest first", "oldest first"])
def test_two_overlapping_downtimes_restored_in_either_order_leave_every_tree_as_before(
    client: TreestatusClient, server: TreestatusServer, order: str
) -> None:
    before = snapshot(server)
    first = client.close(MIXED, DOWNTIME_A)
    second = client.close(["autoland", "try"], DOWNTIME_B, ("infra",))
    assert first is not None and second is not None and first != second

    if order == "newest first":
        client.restore(second)
        assert server.tree_state("autoland")["reason"] == DOWNTIME_A  # downtime 7 still runs
        client.restore(first)
    else:
        report = client.restore(first)
        # Downtime 8 still holds autoland: it stays closed for downtime 8.
        assert report.waiting == {"autoland": second}
        assert (server.tree_state("autoland")["status"], server.tree_state("autoland")["reason"]) == (
            "closed",
            DOWNTIME_B,
        )
        assert server.tree_state("mozilla-central")["reason"] == BUSTAGE
        assert any(entry["reason"] == DOWNTIME_A + WAITING_MARK for entry in client.stack())
        client.restore(second)

    assert snapshot(server) == before
    assert client.stack() == []


def test_restore_leaves_alone_a_tree_a_sheriff_changed_since(
    client: TreestatusClient, server: TreestatusServer
) -> None:
    stack_id = client.close(["autoland", "try"], DOWNTIME_A)
    assert stack_id is not None
    server.set_tree("try", "closed", "Bustage during the downtime", ["checkin_compilation"])

    report = client.restore(stack_id)

    assert report.changed == ("try",)
    assert server.tree_state("try")["reason"] == "Bustage during the downtime"
    assert server.tree_state("autoland")["status"] == "open"
    assert client.stack() == []


def test_restoring_twice_changes_nothing_the_second_time(
    client: TreestatusClient, server: TreestatusServer
) -> None:
    stack_id = client.close(MIXED, DOWNTIME_A)
    assert stack_id is not None
    client.restore(stack_id)
    after_first = snapshot(server)
    writes = sum(1 for r in server.requests if r.method != "GET")

    assert client.restore(stack_id).restored == ()
    assert snapshot(server) == after_first
    assert sum(1 for r in server.requests if r.method != "GET") == writes


def test_discard_drops_the_stack_entry_and_keeps_the_trees_closed(
    client: TreestatusClient, server: TreestatusServer
) -> None:
    stack_id = client.close(["autoland"], DOWNTIME_A)
    assert stack_id is not None

    client.discard(stack_id)

    assert client.stack() == []
    assert client.tree("autoland").status == "closed"


def test_set_status_without_remember_changes_trees_and_not_the_stack(
    client: TreestatusClient, server: TreestatusServer
) -> None:
    client.set_status(["autoland"], "approval required", "Merge day", ())

    assert client.tree("autoland") == TreeState("autoland", "approval required", "Merge day", ())
    assert client.stack() == []


def test_an_unknown_tree_refuses_the_whole_change_and_changes_nothing(
    client: TreestatusClient, server: TreestatusServer, sleeps: list[float]
) -> None:
    before = snapshot(server)

    with pytest.raises(TreestatusError) as raised:
        client.close(["autoland", "firefox-nonesuch"], DOWNTIME_A)

    assert not isinstance(raised.value, TreestatusUnavailable)
    assert "firefox-nonesuch" in str(raised.value)
    assert snapshot(server) == before
    assert client.stack() == []
    assert sleeps == []  # a 4xx is not retried


def test_closing_without_tags_is_refused(client: TreestatusClient, server: TreestatusServer) -> None:
    with pytest.raises(TreestatusError) as raised:
        client.close(["autoland"], DOWNTIME_A, tags=())

    assert raised.value.status == 400
    assert "Tags are required" in str(raised.value)
    assert server.tree_state("autoland")["status"] == "open"


def test_closing_with_a_tag_outside_the_treestatus_list_is_refused(
    client: TreestatusClient, server: TreestatusServer
) -> None:
    with pytest.raises(TreestatusError, match="400"):
        client.close(["autoland"], DOWNTIME_A, tags=("downtime",))

    assert server.tree_state("autoland")["status"] == "open"


def test_a_client_without_a_token_can_read_but_not_change_trees(server: TreestatusServer) -> None:
    anonymous = TreestatusClient(server.url, None, sleep=lambda _: None)

    assert anonymous.tree("autoland").status == "open"
    with pytest.raises(TreestatusError, match="token"):
        anonymous.close(["autoland"], DOWNTIME_A)
    assert patches(server) == 0


def test_a_wrong_token_is_refused_with_401_and_not_retried(
    server: TreestatusServer, sleeps: list[float]
) -> None:
    intruder = TreestatusClient(server.url, "not-the-token", sleep=sleeps.append)

    with pytest.raises(TreestatusError) as raised:
        intruder.close(["autoland"], DOWNTIME_A)

    assert raised.value.status == 401
    assert patches(server) == 1
    assert sleeps == []
    assert server.tree_state("autoland")["status"] == "open"


def test_two_server_errors_then_recovery_apply_the_change_once(
    client: TreestatusClient, server: TreestatusServer, sleeps: list[float]
) -> None:
    server.fail_with(500, 2, methods={"PATCH"})

    stack_id = client.close(MIXED, DOWNTIME_A)

    assert [entry["id"] for entry in client.stack()] == [stack_id]
    assert client.tree("autoland").status == "closed"
    assert patches(server) == 3
    assert sleeps == [0.5, 1.0]


def test_a_lost_answer_after_the_change_was_applied_does_not_apply_it_twice(
    client: TreestatusClient, server: TreestatusServer
) -> None:
    server.fail_with(500, 1, methods={"PATCH"}, after_apply=True)

    stack_id = client.close(MIXED, DOWNTIME_A)

    stack = client.stack()
    assert [entry["id"] for entry in stack] == [stack_id]
    assert patches(server) == 1
    assert len(server.tree_state("autoland")["tags"]) == 1


def test_a_caller_retrying_after_unavailable_finds_the_change_already_made(
    server: TreestatusServer,
) -> None:
    impatient = TreestatusClient(server.url, TOKEN, retries=0, sleep=lambda _: None)
    server.fail_with(503, 1, methods={"PATCH"}, after_apply=True)
    with pytest.raises(TreestatusUnavailable):
        impatient.close(MIXED, DOWNTIME_A)

    stack_id = impatient.close(MIXED, DOWNTIME_A)

    assert [entry["id"] for entry in server.stack_entries()] == [stack_id]
    assert patches(server) == 1


def test_a_rate_limit_is_waited_out_and_retried(
    client: TreestatusClient, server: TreestatusServer, sleeps: list[float]
) -> None:
    server.fail_with(429, 1, methods={"GET"})

    assert client.tree("try").status == "open"
    assert len(sleeps) == 1


@pytest.mark.parametrize("mode", ["refuse", "503"])
def test_a_server_down_for_all_retries_raises_unavailable_and_changes_nothing(
    client: TreestatusClient, server: TreestatusServer, sleeps: list[float], mode: str
) -> None:
    before = snapshot(server)
    server.down(mode)

    with pytest.raises(TreestatusUnavailable):
        client.close(MIXED, DOWNTIME_A)

    server.up()
    assert snapshot(server) == before
    assert server.stack_entries() == []
    assert len(sleeps) == client.retries


def test_a_server_down_during_the_change_is_retried_after_it_comes_back(
    server: TreestatusServer,
) -> None:
    # The sleep stub brings the server back while the client is backing off.
    def wait(_: float) -> None:
        server.up()

    patient = TreestatusClient(server.url, TOKEN, sleep=wait)
    server.down("refuse")

    stack_id = patient.close(["try"], DOWNTIME_A)

    assert [entry["id"] for entry in server.stack_entries()] == [stack_id]


def test_the_token_never_appears_in_log_records(
    client: TreestatusClient, server: TreestatusServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.fail_with(500, 1, methods={"PATCH"})
    stack_id = client.close(MIXED, DOWNTIME_A)
    assert stack_id is not None
    client.restore(stack_id)
    with pytest.raises(TreestatusError) as refused:
        client.close(["firefox-nonesuch"], DOWNTIME_A)
    server.down("refuse")
    with pytest.raises(TreestatusUnavailable) as unavailable:
        client.trees()

    assert any(record.name == "adapters.treestatus" for record in caplog.records)
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in str(record.args)
    assert TOKEN not in str(refused.value) and TOKEN not in str(unavailable.value)
    assert TOKEN not in repr(client)


def test_the_token_is_sent_as_a_bearer_header(server: TreestatusServer, client: TreestatusClient) -> None:
    client.close(["try"], DOWNTIME_A)

    write = next(r for r in server.requests if r.method == "PATCH")
    assert write.authorized
    raw = requests.patch(server.url + "/trees", json={"trees": ["try"]}, timeout=5)
    assert raw.status_code == 401
    assert raw.headers["Content-Type"] == "application/problem+json"
    assert raw.json()["status"] == 401


# The server itself, on the points of the lando-api contract the client relies on.


def test_the_server_refuses_remember_without_status_reason_and_tags(server: TreestatusServer) -> None:
    answer = requests.patch(
        server.url + "/trees",
        json={"trees": ["try"], "reason": "x", "tags": ["planned"], "remember": True},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )

    assert answer.status_code == 400
    assert answer.json()["detail"] == "Must specify status, reason and tags to remember the change."
    assert server.tree_state("try")["reason"] == ""


def test_the_server_refuses_a_revert_value_other_than_0_or_1_and_an_unknown_change(
    server: TreestatusServer, client: TreestatusClient
) -> None:
    stack_id = client.close(["try"], DOWNTIME_A)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    bad = requests.delete(f"{server.url}/stack/{stack_id}", params={"revert": 2}, headers=auth, timeout=5)
    unknown = requests.delete(f"{server.url}/stack/999", params={"revert": 1}, headers=auth, timeout=5)

    assert (bad.status_code, unknown.status_code) == (400, 404)
    assert len(server.stack_entries()) == 1


def test_the_server_reverts_unconditionally_like_lando_api(
    server: TreestatusServer, client: TreestatusClient
) -> None:
    stack_id = client.close(["try"], DOWNTIME_A)
    server.set_tree("try", "closed", "Bustage during the downtime", ["checkin_test"])

    answer = requests.delete(
        f"{server.url}/stack/{stack_id}",
        params={"revert": 1},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )

    assert answer.status_code == 200
    assert (server.tree_state("try")["status"], server.tree_state("try")["reason"]) == ("open", "")


def test_a_tree_reopened_by_a_later_remembered_change_is_left_alone_and_the_change_is_discarded(
    client: TreestatusClient, server: TreestatusServer
) -> None:
    stack_id = client.close(["autoland", "try"], DOWNTIME_A)
    assert stack_id is not None
    # A sheriff reopens autoland early in Treestatus' UI, which remembers the change.
    client.set_status(["autoland"], "open", "reopened early, all green", remember=True)
    (sheriffs_entry, ours) = client.stack()
    assert ours["id"] == stack_id

    report = client.restore(stack_id)

    assert report.changed == ("autoland",) and report.restored == ("try",) and report.waiting == {}
    assert server.tree_state("autoland")["reason"] == "reopened early, all green"
    assert server.tree_state("try")["status"] == "open"
    # The downtime's change is off the stack (discarded, the trees untouched by it): nobody can
    # "restore" it later over what happened since. The sheriff's own change stays theirs.
    assert [entry["id"] for entry in client.stack()] == [sheriffs_entry["id"]]
    assert ("DELETE", f"/stack/{stack_id}", {"revert": ["0"]}) in [
        (r.method, r.path, r.query) for r in server.requests if r.method == "DELETE"]

