"""What the import commands print when a file is refused: every problem with its line, up to 50."""

from pathlib import Path

from django.core.management.base import CommandError

from annotate.formats import ImportFormatError

SHOWN = 50


def refused(path: Path, error: ImportFormatError) -> CommandError:
    lines = [f"{path}: {len(error.problems)} problem(s); nothing was imported."]
    lines += [f"  {problem}" for problem in error.problems[:SHOWN]]
    if len(error.problems) > SHOWN:
        lines.append(f"  … and {len(error.problems) - SHOWN} more")
    return CommandError("\n".join(lines))
