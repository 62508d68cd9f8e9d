"""The one writer of the benchmarks' JSON records (``--record FILE``): the figures with the command and commit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def write_record(path: Path, figures: dict) -> None:
    """``figures`` with the command line that made them and the short commit of the code, as JSON at ``path``."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": command, "commit": commit, **figures}, indent=1) + "\n")
