"""End to end: a whole downtime piped through `python bot.py --console` as a subprocess, on
SQLite and on PostgreSQL (the `database` fixture; the password only in the environment)."""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import CursorResult, text

from tests.conftest import make_test_engine
from tests.servers.postgres import PASSWORD_ENV

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """\
#ci alice: !downtime propose in 3d for 2h bug 123456 -- Upgrade hg.mozilla.org
#ci alice: !downtime bug add 1 654321 --security -- Patch the secret thing
#ci ciduty: !downtime approve 1
#ci relman: !downtime preapprove 1
#ci ciduty: !downtime announce 1 --force -- demo
#ci ciduty: !downtime start 1 --force
#ci ciduty: !downtime done 1 123456 landed
#ci ciduty: !downtime done 1 654321 rolled-back -- replication lag
#ci ciduty: !downtime end 1
#developers sheriff: !downtime verify 1
#ci alice: !downtime show 1
alice: !downtime show 1
"""


def run_bot(tmp_path: Path, stdin: str, database: str | None = None, **environ: str) -> subprocess.CompletedProcess[str]:
    """`bot.py --console` on `database` (default a SQLite file in tmp_path); on PostgreSQL the
    password is in the environment variable [bot] database_password_env names."""
    database = database or f"sqlite:///{tmp_path / 'bot.db'}"
    if not database.startswith("sqlite"):
        environ = {"DOWNTIMEBOT_BOT_DATABASE_PASSWORD_ENV": PASSWORD_ENV, **environ}
    env = dict(os.environ, DOWNTIMEBOT_BOT_DATABASE=database, DOWNTIMEBOT_LOG_LEVEL="WARNING")
    env.update(environ)
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--console"],
        input=stdin, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )


class Rows:
    """Plain SQL on the test's database, whichever engine it is."""

    def __init__(self, database: str):
        self.engine = make_test_engine(database)

    def execute(self, sql: str) -> CursorResult[Any]:
        with self.engine.connect() as connection:
            return connection.execute(text(sql))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def rows(database: str) -> Iterator[Rows]:
    db = Rows(database)
    yield db
    db.close()


def _when(value: str | dt.datetime) -> dt.datetime:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def test_a_whole_downtime_through_the_console_subprocess(tmp_path: Path, database: str, rows: Rows) -> None:
    result = run_bot(tmp_path, SCRIPT, database)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    said = [line for line in out if line.startswith(("#ci downtimebot: ", "#developers downtimebot: "))]
    assert said[0].startswith("#ci downtimebot: Downtime #1 proposed by alice")
    assert "#ci downtimebot: Bug 654321 is in downtime #1 (security-sensitive: described vaguely)." in said
    assert any(l.startswith("#developers downtimebot: Downtime #1 announced") for l in said)
    assert any(l.startswith("#developers downtimebot: sheriff: Downtime #1 starts now") for l in said)
    assert any(l.startswith("#developers downtimebot: sheriff: TREE OPEN: downtime #1 is over") for l in said)
    assert "#developers downtimebot: Downtime #1 verified by sheriff. Thanks!" in said
    # The security bug's wording only privately, to its requester.
    assert "#ci downtimebot: Bug 654321 [rolled-back] (security): security-sensitive work (details restricted) " \
        "(replication lag)" in said
    assert all("Patch the secret thing" not in line for line in said)
    assert "@alice downtimebot: Bug 654321 [rolled-back] (security): Patch the secret thing (replication lag)" in out
    # Mails are printed when [mail] is not configured; the security bug is vague in them.
    mails = [m.split("----- end of mail -----")[0] for m in result.stdout.split("----- mail -----")[1:]]
    subjects = [next(l for l in m.splitlines() if l.startswith("Subject: ")) for m in mails]
    assert subjects[0].startswith("Subject: [DRAFT] Tree-closing downtime #1")
    assert subjects[1].startswith("Subject: Tree-closing downtime #1")
    assert subjects[-1] == "Subject: Re: Tree-closing downtime #1: TREE OPEN"
    assert all("Patch the secret thing" not in m for m in mails)
    assert "Bug 654321: security-sensitive work (details restricted): rolled-back" in mails[-1]

    db = rows
    assert db.execute("select state, verified_by from downtimes").fetchall() == [("finished", "sheriff")]
    assert db.execute("select bug, status from downtime_bugs order by bug").fetchall() == [
        (123456, "landed"), (654321, "rolled-back")]
    actions = [a for (a,) in db.execute("select action from audit_events where downtime_id = 1 order by id")]
    assert actions == ["propose", "add bug", "approve", "preapprove", "announce", "start", "trees close", "done",
                       "done", "end", "trees restore", "verify"]
    assert db.execute("select count(*) from outbox where status != 'sent'").fetchone() == (0,)
    assert db.execute("select status from trees where name = 'autoland'").fetchone() == ("open",)


def test_the_console_keeps_its_data_across_restarts_and_refuses_bad_lines_with_one_line(tmp_path: Path) -> None:
    first = run_bot(tmp_path, "#ci alice: !downtime propose in 3d for 1h -- First\n")
    assert first.returncode == 0
    second = run_bot(tmp_path, "#ci alice: !downtime list\n#ci alice: !downtime show x\n~mallory: !downtime approve 1\n")
    lines = second.stdout.splitlines()
    assert lines[0].startswith("#ci downtimebot: #1 [proposed]")
    assert lines[1] == "#ci downtimebot: 'x' is not a downtime id (a number such as 7) (usage: !downtime show <id>)"
    assert lines[2].startswith("@mallory downtimebot: identify with services first")
    assert len(lines) == 3


def test_a_list_is_answered_while_another_senders_proposal_waits_on_a_slow_bugzilla(tmp_path: Path) -> None:
    from tests.servers.bugzilla import BugzillaServer

    with BugzillaServer(latency=2.0) as server:  # every request takes 2 s
        server.add_account("downtime-bot@example.org", "bot-key-0123456789abcdef", groups=["infra"])
        server.add_bug(7, "Move the build database", "eng@example.org")
        result = run_bot(tmp_path, "#ci alice: !downtime propose in 3d for 2h bug 7 -- Move the build database\n"
                                   "#ci bob: !downtime list\n"
                                   "#ci alice: !downtime show 1\n",
                         DOWNTIMEBOT_BUGZILLA_URL=server.url, DOWNTIMEBOT_BUGZILLA_ENABLED="on",
                         BUGZILLA_API_KEY="bot-key-0123456789abcdef")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if line.startswith("#ci downtimebot: ")]
    proposed = next(i for i, line in enumerate(said) if line.startswith("#ci downtimebot: Downtime #1 proposed"))
    # Answered before the proposal was made, bob's list has no downtime in it.
    listed = next((i for i, line in enumerate(said) if line.startswith("#ci downtimebot: No upcoming downtimes")), None)
    assert listed is not None, said
    shown = next(i for i, line in enumerate(said) if line.startswith("#ci downtimebot: #1 [proposed]"))
    # bob is not held up by alice's look-up; alice's own lines stay in order.
    assert listed < proposed < shown, said


# A whole downtime with what goes wrong in real ones: the requester rewords it, a pre-approver
# objects and the objection outlives a reschedule, a worker confirms, a bug comes late and waits
# for CiDuty, CiDuty starts early, and one bug has no outcome at the end.
PROCESS = """\
#ci alice: !downtime propose in 3d for 2 hours bug 123456 -- Upgrade hg.mozilla.org
#ci alice: !downtime edit 1 -- Upgrade hg.mozilla.org to Mercurial 6.8
#ci ciduty: !downtime approve 1
#ci relman: !downtime object 1 -- release day
#ci ciduty: !downtime announce 1
#ci ciduty: !downtime reschedule 1 in 4d
#ci ciduty: !downtime announce 1
#ci relman: !downtime preapprove 1
#ci alice: !downtime confirm 1
#ci ciduty: !downtime announce 1
#ci alice: !downtime bug add 1 654321 -- Move the build database
#ci ciduty: !downtime approve 1
#ci ciduty: !downtime start 1
#ci ciduty: !downtime start 1 --force
#ci ciduty: !downtime done 1 123456 landed
#ci ciduty: !downtime end 1
#developers sheriff: !downtime verify 1
"""
T = "hh:mm UTC (hh:mm America/Los_Angeles, hh:mm Europe/Berlin)"
BY_HAND = "#ci downtimebot: To do by hand: Bugzilla is not configured:"
PROCESS_TRANSCRIPT = [
    f"#ci downtimebot: Downtime #1 proposed by alice: {T} for 2h. CiDuty reviews it: !downtime approve 1",
    f"{BY_HAND} set needs-treeclosure? on bug 123456 by hand",
    "#ci downtimebot: Downtime #1 has the new wording.",
    "#ci downtimebot: Downtime #1 approved ([tree-closure hh:mm UTC]). The draft notice goes to the "
    "pre-approvers; announce it with !downtime announce 1",
    f"{BY_HAND} set needs-treeclosure+ and add [tree-closure hh:mm UTC] to the whiteboard of bug 123456 by hand",
    "#ci downtimebot: To do by hand: mail is not configured: the draft notice was printed, not sent",
    f"#ci downtimebot: alice: The draft notice of downtime #1 ({T} for 2h (until {T})) went out: the people "
    "working in it, please check its wording and confirm it with !downtime confirm 1 (see !downtime notice 1)",
    "#ci downtimebot: Downtime #1: objection by relman recorded; CiDuty is told.",
    "#ci downtimebot: ciduty: Pre-approver relman objects to downtime #1: release day",
    "#ci downtimebot: cannot announce downtime #1: relman objects: release day "
    "(to announce anyway: !downtime announce 1 --force -- <reason>)",
    f"#ci downtimebot: Downtime #1 rescheduled to {T} for 2h.",
    "#ci downtimebot: Note: the objection of relman still stands: announcing needs their !downtime preapprove 1, "
    "or --force with a reason",
    "#ci downtimebot: Note: the draft went again, for the new time, to the people working in downtime #1 and the "
    "pre-approvers",
    f"{BY_HAND} put [tree-closure hh:mm UTC] in the whiteboard of bug 123456 and comment that the downtime "
    "was rescheduled, by hand",
    "#ci downtimebot: To do by hand: mail is not configured: the draft notice was printed, not sent",
    f"#ci downtimebot: alice: The draft notice of downtime #1 ({T} for 2h (until {T})) went out again for its "
    "new time: the people working in it, please check its wording and confirm it with !downtime confirm 1 "
    "(see !downtime notice 1)",
    "#ci downtimebot: cannot announce downtime #1: relman objects: release day "
    "(to announce anyway: !downtime announce 1 --force -- <reason>)",
    "#ci downtimebot: Downtime #1: pre-approved by relman.",
    "#ci downtimebot: Note: your objection to downtime #1 is withdrawn; CiDuty is told",
    "#ci downtimebot: ciduty: Pre-approver relman withdrew their objection to downtime #1 (release day)",
    "#ci downtimebot: Downtime #1: draft confirmed by alice.",
    f"#ci downtimebot: Downtime #1 announced for {T}.",
    f"#developers downtimebot: Downtime #1 announced: trees (autoland, mozilla-central, mozilla-beta, try) close {T} "
    f"for 2h (until {T}). Upgrade hg.mozilla.org to Mercurial 6.8 (bug 123456). Details: !downtime notice 1; "
    "!canipush <branch>",
    f"#ci downtimebot: Downtime #1 announced: trees (autoland, mozilla-central, mozilla-beta, try) close {T} "
    f"for 2h (until {T}). Upgrade hg.mozilla.org to Mercurial 6.8 (bug 123456). Details: !downtime notice 1; "
    "!canipush <branch>",
    "#ci downtimebot: Bug 654321 is in downtime #1: a change to the announced notice, waiting for CiDuty's "
    "!downtime approve 1.",
    f"{BY_HAND} set needs-treeclosure? on bug 654321 by hand",
    "#ci downtimebot: ciduty: alice asks to add bug 654321 to announced downtime #1: approve it with "
    "!downtime approve 1",
    "#ci downtimebot: Downtime #1: bug 654321 approved; the updated notice goes to everyone told before.",
    f"{BY_HAND} set needs-treeclosure+ and add [tree-closure hh:mm UTC] to the whiteboard of bug 654321 by hand",
    f"#developers downtimebot: Downtime #1 ({T} for 2h (until {T})) is updated: bug 654321 added. "
    "Details: !downtime notice 1",
    f"#ci downtimebot: Downtime #1 ({T} for 2h (until {T})) is updated: bug 654321 added. "
    "Details: !downtime notice 1",
    f"#ci downtimebot: downtime #1 is announced for {T}, more than an hour from now: use "
    "!downtime start 1 --force to start it early",
    "#ci downtimebot: Downtime #1 started; sheriffs notified.",
    "#ci downtimebot: Note: closed autoland, mozilla-central, mozilla-beta, try (tree change 1)",
    f"#ci downtimebot: Note: started before the planned start ({T}): the expected end moves from {T} to {T}",
    "#developers downtimebot: sheriff: Downtime #1 starts now: closing autoland, mozilla-central, mozilla-beta, try "
    f"until about {T}. Upgrade hg.mozilla.org to Mercurial 6.8",
    f"#ci downtimebot: ciduty: Downtime #1 started by ciduty; trees closed until about {T} (started early: the "
    f"planned end was {T}). When the work is done: !downtime done 1 <bug> <outcome>, then !downtime end 1.",
    "#ci downtimebot: Bug 123456 in downtime #1: landed.",
    "#ci downtimebot: Downtime #1 ended: TREE OPEN sent; sheriffs, please verify.",
    "#ci downtimebot: Note: restored autoland, mozilla-beta, mozilla-central, try",
    "#ci downtimebot: Note: no outcome recorded: 654321 (counted as not done; a later "
    "!downtime done 1 <bug> <outcome> sends a correction)",
    f"{BY_HAND} comment the outcome on bug 123456, 654321 by hand",
    f"#developers downtimebot: sheriff: TREE OPEN: downtime #1 is over ({T}). Done: 123456; not done: 654321 "
    "(no outcome recorded: 654321). The trees are open again. Sheriffs: please check the trees and say "
    "!downtime verify 1.",
    f"#ci downtimebot: TREE OPEN: downtime #1 is over ({T}). Done: 123456; not done: 654321 "
    "(no outcome recorded: 654321). The trees are open again. Sheriffs: please check the trees and say "
    "!downtime verify 1.",
    "#developers downtimebot: Downtime #1 verified by sheriff. Thanks!",
]


def _timeless(line: str) -> str:
    """The line with its dates left out and its clock times blanked: the run's times follow the
    wall clock (and whether a zone's date differs from the UTC date depends on the hour)."""
    dateless = re.sub(r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) )?\d{4}-\d{2}-\d{2} ", "", line)
    return re.sub(r"\b\d{2}:\d{2}\b", "hh:mm", dateless)


def test_a_downtime_with_an_objection_a_reschedule_an_edit_a_late_bug_an_early_start_and_a_missing_outcome(
    tmp_path: Path, database: str, rows: Rows,
) -> None:
    # Every hour of every day is low-impact and within CiDuty's hours: the run's warnings do not
    # depend on when the tests run.
    result = run_bot(tmp_path, PROCESS, database, DOWNTIMEBOT_POLICY_LOW_IMPACT="mon-sun 00:00-24:00 UTC",
                     DOWNTIMEBOT_POLICY_CIDUTY_HOURS="daily 00:00-24:00 UTC")
    assert result.returncode == 0, result.stderr
    said = [_timeless(line) for line in result.stdout.splitlines() if re.match(r"[#@]\S+ downtimebot: ", line)]
    assert said == PROCESS_TRANSCRIPT

    mails = [m.split("----- end of mail -----")[0] for m in result.stdout.split("----- mail -----")[1:]]
    subjects = [_timeless(next(l for l in m.splitlines() if l.startswith("Subject: "))) for m in mails]
    assert subjects == [
        "Subject: [DRAFT] Tree-closing downtime #1: hh:mm UTC for review",  # approved
        "Subject: [DRAFT] Tree-closing downtime #1: hh:mm UTC for review",  # again for the new time
        "Subject: Tree-closing downtime #1: hh:mm UTC for 2h",
        "Subject: Re: Tree-closing downtime #1: updated notice",
        "Subject: Re: Tree-closing downtime #1: TREE OPEN",
    ]
    assert "moved to a new time" in mails[1] and "Upgrade hg.mozilla.org to Mercurial 6.8" in mails[1]
    assert "  * added: bug 654321" in mails[3] and "Bug 654321: Move the build database" in mails[3]
    assert "No outcome recorded: 654321." in mails[4]

    db = rows
    state, revision, updates, started, end = db.execute(
        "select state, revision, notice_updates, started_at, end_at from downtimes").fetchone()
    assert (state, revision, updates) == ("finished", 2, 1)  # rescheduled, started early; one updated notice
    # Started days early: the expected end is the actual start plus the planned 2 hours.
    assert _when(end) - _when(started) == dt.timedelta(hours=2)
    assert db.execute("select bug, status, pending from downtime_bugs order by bug").fetchall() == [
        (123456, "landed", ""), (654321, "not-done", "")]
    actions = [a for (a,) in db.execute("select action from audit_events where downtime_id = 1 order by id")]
    assert actions == ["propose", "edit", "approve", "object", "reschedule", "preapprove", "confirm", "announce",
                       "add bug", "approve", "start", "trees close", "done", "end", "trees restore", "verify"]
    (detail,) = db.execute("select detail from audit_events where action = 'start'").fetchone()
    assert detail.startswith("forced early start: expected end moved from ")
    assert db.execute("select count(*) from outbox where status != 'sent'").fetchone() == (0,)


def test_the_database_password_is_never_in_the_console_bots_log_or_output(tmp_path: Path, postgres: Any) -> None:
    import secrets

    password = f"pw-{secrets.token_hex(8)}-Sup3r"
    postgres.create_database("console_secret")
    postgres.create_role("console_bot", password)
    postgres.grant_database("console_secret", "console_bot")
    url = postgres.url("console_secret", user="console_bot")
    try:
        ok = run_bot(tmp_path, "#ci alice: !downtime propose in 3d for 1h -- First\n#ci alice: !downtime show 1\n",
                     url, DOWNTIMEBOT_BOT_DATABASE_PASSWORD_ENV="CONSOLE_DB_PASSWORD", CONSOLE_DB_PASSWORD=password,
                     DOWNTIMEBOT_LOG_LEVEL="DEBUG")
        assert ok.returncode == 0, ok.stderr
        assert any(line.startswith("#ci downtimebot: Downtime #1 proposed") for line in ok.stdout.splitlines())
        assert "console_secret" in ok.stderr  # the log names the database it uses
        wrong = "wrong-" + password
        refused = run_bot(tmp_path, "#ci alice: !downtime list\n", url,
                          DOWNTIMEBOT_BOT_DATABASE_PASSWORD_ENV="CONSOLE_DB_PASSWORD", CONSOLE_DB_PASSWORD=wrong,
                          DOWNTIMEBOT_LOG_LEVEL="DEBUG")
        assert refused.returncode == 3 and "Traceback" not in refused.stderr
        assert refused.stderr.splitlines()[-1] == (
            f"database error: cannot open the database {url}: connection failed: connection to server at "
            f'"127.0.0.1", port {postgres.port} failed: FATAL: password authentication failed for user "console_bot"')
        for run in (ok, refused):
            assert password not in run.stdout + run.stderr
        assert wrong not in refused.stdout + refused.stderr
    finally:
        postgres.drop_database("console_secret")
