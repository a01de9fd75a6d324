"""End to end: a whole downtime piped through `python bot.py --console` as a subprocess."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

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


def run_bot(tmp_path: Path, stdin: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOWNTIMEBOT_BOT_DATABASE=f"sqlite:///{tmp_path / 'bot.db'}", DOWNTIMEBOT_LOG_LEVEL="WARNING",
               **environ)
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--console"],
        input=stdin, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )


def test_a_whole_downtime_through_the_console_subprocess(tmp_path: Path) -> None:
    result = run_bot(tmp_path, SCRIPT)
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

    db = sqlite3.connect(tmp_path / "bot.db")
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
