"""``orchestration/cron/lakehouse.crontab``: read as cron reads it (five time fields, then a command
run by bash), so its entries can be checked without installing it."""

from __future__ import annotations

import re
from pathlib import Path

from lakehouse.settings import PROJECT_ROOT

CRONTAB = PROJECT_ROOT / "orchestration" / "cron" / "lakehouse.crontab"
_ASSIGNMENT = re.compile(r"^[A-Z_]+=")


def entries(crontab: Path = CRONTAB) -> list[tuple[list[str], str]]:
    """(the five time fields, the command) of each entry; comments and variables skipped."""
    found = []
    for line in crontab.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or _ASSIGNMENT.match(line):
            continue
        *fields, command = line.split(maxsplit=5)
        found.append((fields, command))
    return found


def test_every_entry_changes_to_the_project_path_quoted() -> None:
    # 'cd $LAKEHOUSE' split a project path with a space into two words.
    commands = [command for _, command in entries()]
    assert commands and all(command.startswith('cd "$LAKEHOUSE" && ') for command in commands), commands
