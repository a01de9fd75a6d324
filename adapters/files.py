"""Files and folders that hold the bot's data (the SQLite database, the Matrix store) are
readable by their owner only.

What the bot creates is created so (folders 0700, files 0600). A folder that already exists is
the operator's choice (``/var/lib/downtimebot``, a shared mount) and is left as it is, with a
warning when others can read it; the database file itself is always narrowed to 0600.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def private_folder(path: Path) -> Path:
    """Create `path` and its missing parents as 0700; an existing folder is left as it is."""
    missing: list[Path] = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(created, 0o700)  # mkdir's mode goes through the umask
    if not missing and stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning("%s is open to other users (mode %o); left as it is: the files the bot puts "
                    "there are readable by their owner only", path, stat.S_IMODE(path.stat().st_mode))
    return path


def private_file(path: Path) -> None:
    """Create `path` (empty) as 0600 if it is missing; narrow an existing one to 0600."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
        log.warning("%s was open to other users (mode %o): now readable by its owner only", path, mode)
