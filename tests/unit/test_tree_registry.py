"""The built-in tree registry (the Trees use cases, on a SQLite database): remembered changes and their restore."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from adapters.db import migrate, session_factory
from tests.conftest import make_test_engine
from models.events import LeftTree
from models.lifecycle import DomainError, Forbidden, Role
from models.orm import Tree
from models.queries import Queries
from models.trees import Trees
from models.work import Actor, Settings, Work

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
TREES = ("autoland", "mozilla-central", "mozilla-beta", "try")
BUSTAGE = "Bustage from bug 1234567"
APPROVAL = "Release candidate: a= needed"


@pytest.fixture
def session(database: str) -> Iterator[Session]:
    engine = make_test_engine(database)
    migrate(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def core(session: Session, who: str = "carol", roles: frozenset[Role] = frozenset({Role.CIDUTY})) -> Trees:
    return Trees(Work(session, now=NOW, settings=Settings(trees=TREES), actor=Actor(who, "irc", who, roles)))


def sheriff(session: Session) -> Trees:
    return core(session, "sam", frozenset({Role.SHERIFF}))


def states(session: Session) -> dict[str, tuple[str, str, str]]:
    session.flush()
    return {t.name: (t.status, t.reason, t.tags) for t in session.query(Tree).order_by(Tree.name)}


@pytest.fixture
def mixed(session: Session) -> dict[str, tuple[str, str, str]]:
    """autoland open, mozilla-central closed for bustage, mozilla-beta approval required, try open."""
    c = core(session)
    c.trees()
    for name, status, reason, tags in [
        ("mozilla-central", "closed", BUSTAGE, "checkin_test"),
        ("mozilla-beta", "approval required", APPROVAL, ""),
    ]:
        tree = session.get(Tree, name)
        assert tree is not None
        tree.status, tree.reason, tree.tags = status, reason, tags
    return states(session)


def test_closing_trees_in_mixed_states_and_restoring_brings_each_back_exactly(session: Session, mixed) -> None:
    c = core(session)
    change = c.close(["autoland", "mozilla-central", "mozilla-beta"], "Downtime #1: hg upgrade", downtime_id=1)
    assert {n: s[0] for n, s in states(session).items()} == {
        "autoland": "closed", "mozilla-beta": "closed", "mozilla-central": "closed", "try": "open"}
    assert states(session)["mozilla-central"][1:] == ("Downtime #1: hg upgrade", "planned")

    done = c.restore(change.id)

    assert states(session) == mixed
    assert states(session)["mozilla-central"] == ("closed", BUSTAGE, "checkin_test")
    assert sorted(done.restored) == ["autoland", "mozilla-beta", "mozilla-central"]
    assert done.left == ()


def test_a_tree_reopened_early_by_a_sheriff_is_left_alone_and_named(session: Session, mixed) -> None:
    change = core(session).close(["autoland", "mozilla-central"], "Downtime #1: hg upgrade", downtime_id=1)
    sheriff(session).open_by_hand(["autoland"], "reopened early, all green")

    done = core(session).restore(change.id)

    assert done.restored == ("mozilla-central",)
    assert done.left == (LeftTree("autoland", "open", "reopened early, all green", held_by=None, who="sam"),)
    assert states(session)["autoland"] == ("open", "reopened early, all green", "")
    assert states(session)["mozilla-central"] == mixed["mozilla-central"]


def test_a_tree_closed_for_bustage_during_the_downtime_stays_closed_and_later_gets_its_state_from_before(
    session: Session, mixed
) -> None:
    downtime = core(session).close(["autoland", "try"], "Downtime #1: hg upgrade", downtime_id=1)
    bustage = sheriff(session).close_by_hand(["autoland"], "bustage on linux64")

    done = core(session).restore(downtime.id)

    assert done.restored == ("try",)
    assert done.left == (LeftTree("autoland", "closed", "bustage on linux64", held_by=bustage.id, who="sam"),)
    assert states(session)["autoland"] == ("closed", "bustage on linux64", "other")
    sheriff(session).restore_by_hand(bustage.id)
    assert states(session) == mixed


@pytest.mark.parametrize("order", ["newest first", "oldest first"])
def test_two_downtimes_stacked_and_restored_in_either_order_end_with_the_original_states(
    session: Session, mixed, order: str
) -> None:
    first = core(session).close(["autoland", "mozilla-central"], "Downtime #1: hg upgrade", downtime_id=1)
    second = core(session).close(["mozilla-central", "mozilla-beta"], "Downtime #2: db failover", downtime_id=2)
    assert states(session)["mozilla-central"][1] == "Downtime #2: db failover"

    for change in ([second, first] if order == "newest first" else [first, second]):
        core(session).restore(change.id)

    assert states(session) == mixed
    assert Queries(session, now=NOW, settings=Settings(trees=TREES)).tree_changes() == []


def test_the_older_downtime_restored_first_leaves_the_shared_tree_to_the_newer_one(session: Session, mixed) -> None:
    first = core(session).close(["autoland", "mozilla-central"], "Downtime #1: hg upgrade", downtime_id=1)
    core(session).close(["mozilla-central"], "Downtime #2: db failover", downtime_id=2)

    done = core(session).restore(first.id)

    assert done.restored == ("autoland",)
    assert states(session)["mozilla-central"][1] == "Downtime #2: db failover"
    assert [(t.tree, t.held_by is not None) for t in done.left] == [("mozilla-central", True)]


def test_a_tree_named_twice_is_closed_once_and_restored(session: Session, mixed) -> None:
    change = core(session).close(["autoland", "autoland"], "Downtime #1: hg upgrade")
    assert [i.tree for i in change.items] == ["autoland"]
    core(session).restore(change.id)
    assert states(session) == mixed


def test_a_change_cannot_be_restored_twice(session: Session, mixed) -> None:
    c = core(session)
    change = c.close(["autoland"], "Downtime #1: hg upgrade")
    c.restore(change.id)
    with pytest.raises(DomainError) as refused:
        c.restore(change.id)
    assert (refused.value.reason, refused.value.facts) == ("no_tree_change_to_restore", {"change": change.id})
    assert states(session) == mixed


def test_an_unknown_tree_is_refused_and_nothing_closes(session: Session, mixed) -> None:
    with pytest.raises(DomainError) as refused:
        core(session).close(["autoland", "firefox-nonesuch"], "Downtime #1")
    assert refused.value.reason == "unknown_trees" and refused.value.facts["unknown"] == ["firefox-nonesuch"]
    assert states(session) == mixed


def test_only_sheriffs_and_ciduty_change_trees_by_hand(session: Session, mixed) -> None:
    with pytest.raises(Forbidden):
        core(session, "alice", frozenset()).close_by_hand(["autoland"], "I feel like it")
    with pytest.raises(Forbidden):
        core(session, "alice", frozenset()).open_by_hand(["mozilla-central"], "")
    assert states(session) == mixed


def test_the_treestatus_backends_refuse_changes_by_hand(session: Session) -> None:
    c = Trees(Work(session, now=NOW, settings=Settings(trees=TREES, tree_backend="treestatus"),
                   actor=Actor("sam", "irc", "sam", frozenset({Role.SHERIFF}))))
    with pytest.raises(DomainError) as refused:
        c.close_by_hand(["autoland"], "bustage")
    assert refused.value.reason == "trees_elsewhere"
