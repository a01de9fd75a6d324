"""Through `python bot.py --console`: a console name is matched like an IRC account, so a person
whom [people] lists only by their Matrix ID lends no role to a console name like theirs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_console_name_like_a_matrix_only_persons_name_holds_none_of_their_roles(tmp_path: Path) -> None:
    config = tmp_path / "bot.ini"
    config.write_text(
        f"[bot]\ndatabase = sqlite:///{tmp_path / 'bot.db'}\ntransports = console\n"
        "[roles]\nciduty = @carol:mozilla.org, ciduty\n"
        "[people]\ncarol = @carol:mozilla.org, carol@mozilla.org\n"
    )
    script = ("#ci alice: !downtime propose in 3d for 2h bug 123456 -- Upgrade hg.mozilla.org\n"
              "#ci carol: !downtime approve 1\n"
              "#ci ciduty: !downtime approve 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNTIMEBOT_")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--config", str(config)],
        input=script, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if line.startswith("#ci downtimebot: ")]
    assert said[0].startswith("#ci downtimebot: Downtime #1 proposed by alice")
    refused = [i for i, line in enumerate(said) if line.startswith("#ci downtimebot: only CiDuty")]
    approved = [i for i, line in enumerate(said) if line.startswith("#ci downtimebot: Downtime #1 approved")]
    assert refused and approved and refused[0] < approved[0], said  # carol refused, then ciduty approves
