"""The typed payloads of outbox rows that change something outside: Bugzilla, the trees, mail.

A reaction (`models/reactions.py`) makes one of these and the outbox stores it as JSON with
its type and a version (``{"v": 1, "type": "approve-bugs", ...}``); the adapter that carries
it out reads it back with `load` and matches on the class. Nothing else looks inside.

Rows written before the payloads had a version (``{"op": "approve", ...}``) are read by
`_legacy`, so an upgrade never strands a change that was still waiting.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

VERSION = 1


class JobError(ValueError):
    """A payload that no version of this code wrote: the row can never be carried out."""


@dataclass(frozen=True)
class Job:
    kind: ClassVar[str]  # the outbox row's kind, and so which worker carries it out
    type: ClassVar[str]  # the name stored in the payload


# ---- Bugzilla --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NominateBugs(Job):
    """Set the flag to "?" on bugs that do not have "?" or "+" yet."""

    kind: ClassVar[str] = "bugzilla"
    type: ClassVar[str] = "nominate-bugs"
    bugs: tuple[int, ...]


@dataclass(frozen=True)
class ApproveBugs(Job):
    """Set the flag to "+" and put the downtime's tag in each whiteboard."""

    kind: ClassVar[str] = "bugzilla"
    type: ClassVar[str] = "approve-bugs"
    bugs: tuple[int, ...]
    tag: str


@dataclass(frozen=True)
class RetagBugs(Job):
    """The downtime moved or was called off: new tag (or none), a comment, and on a
    cancellation the approved flag back to "?" so the bugs wait for another downtime."""

    kind: ClassVar[str] = "bugzilla"
    type: ClassVar[str] = "retag-bugs"
    bugs: tuple[int, ...]
    tag: str  # "" takes the tag out
    comment: str
    renominate: bool = False


@dataclass(frozen=True)
class BugResult:
    bug: int
    status: str  # landed | landed-and-stuck | rolled-back | not-done
    note: str
    line: str | None  # the outcome sentence of the comment (None: a row from before versions)
    flag: str | None  # the flag afterwards ("X" clears it), None to leave it


@dataclass(frozen=True)
class RecordOutcomes(Job):
    """Comment each bug's outcome (one update per distinct comment) and set its flag."""

    kind: ClassVar[str] = "bugzilla"
    type: ClassVar[str] = "record-outcomes"
    results: tuple[BugResult, ...]
    comment: str  # the first lines of every comment: when the downtime ran


# ---- the trees -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloseTrees(Job):
    kind: ClassVar[str] = "trees"
    type: ClassVar[str] = "close-trees"
    trees: tuple[str, ...]
    reason: str
    tags: tuple[str, ...]
    change: int | None  # the local TreeChange standing for it


@dataclass(frozen=True)
class RestoreTrees(Job):
    kind: ClassVar[str] = "trees"
    type: ClassVar[str] = "restore-trees"
    downtime: int | None
    change: int | None


# ---- mail ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    """The calendar part of a mail (RFC 5545/5546): the downtime's event at this sequence."""

    method: str  # REQUEST | CANCEL
    sequence: int
    status: str  # CONFIRMED | CANCELLED


@dataclass(frozen=True)
class SendMail(Job):
    kind: ClassVar[str] = "mail"
    type: ClassVar[str] = "mail"
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    thread: str | None = None  # the outbox key of the mail this one answers (In-Reply-To)
    invitation: Invitation | None = None


BugzillaJob = NominateBugs | ApproveBugs | RetagBugs | RecordOutcomes
TreeJob = CloseTrees | RestoreTrees
TYPES: Mapping[str, type[Job]] = {
    cls.type: cls for cls in (NominateBugs, ApproveBugs, RetagBugs, RecordOutcomes, CloseTrees, RestoreTrees, SendMail)
}


def dump(job: Job) -> dict[str, Any]:
    """The JSON payload of `job`: its fields, its type and the version."""
    return {"v": VERSION, "type": job.type, **dataclasses.asdict(job)}


def load(payload: Mapping[str, Any]) -> Job:
    """The job a payload stands for, whichever version wrote it."""
    if "v" not in payload:
        return _legacy(payload)
    if payload["v"] != VERSION:
        raise JobError(f"job payload version {payload['v']!r} is newer than this bot ({VERSION})")
    cls = TYPES.get(payload.get("type", ""))
    if cls is None:
        raise JobError(f"unknown job type {payload.get('type')!r}")
    return _build(cls, payload)


def _build(cls: type[Job], data: Mapping[str, Any]) -> Job:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING:
                raise JobError(f"{cls.type} job without {f.name}")
            continue
        value = data[f.name]
        if f.name == "results":
            value = tuple(BugResult(**r) for r in value)
        elif f.name == "invitation":
            value = Invitation(**value) if value else None
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def _legacy(p: Mapping[str, Any]) -> Job:
    """Payloads written before version 1: Bugzilla and tree jobs keyed by "op", mails untyped."""
    op = p.get("op")
    if op is None and "subject" in p:
        calendar = p.get("calendar")
        return SendMail(
            to=tuple(p.get("to", ())), cc=tuple(p.get("cc", ())), subject=p["subject"], thread=p.get("thread"),
            invitation=Invitation(calendar["method"], int(calendar["sequence"]), calendar["status"]) if calendar else None,
        )
    if op == "nominate":
        return NominateBugs(tuple(p["bugs"]))
    if op == "approve":
        return ApproveBugs(tuple(p["bugs"]), p["tag"])
    if op in ("rescheduled", "cancelled"):
        return RetagBugs(tuple(p["bugs"]), p["tag"], p["comment"], renominate=op == "cancelled")
    if op == "outcomes":
        # The flag rule of that version: work that did not land is taken off to be nominated again.
        return RecordOutcomes(
            tuple(
                BugResult(int(bug), status, note, None, "X" if status in ("rolled-back", "not-done") else None)
                for bug, (status, note) in p["outcomes"].items()
            ),
            p["comment"],
        )
    if op == "close":
        return CloseTrees(tuple(p["trees"]), p["reason"], tuple(p["tags"]), p.get("change"))
    if op == "restore":
        return RestoreTrees(p.get("downtime"), p.get("change"))
    raise JobError(f"unknown job {op!r}")
