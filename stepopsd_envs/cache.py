"""Where envs keep what they generate once and reuse: ``$STEPOPSD_CACHE`` or ``~/.cache/stepopsd``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(name: str) -> Path:
    """``$STEPOPSD_CACHE/<name>`` or ``~/.cache/stepopsd/<name>`` (not created)."""
    return Path(os.environ.get("STEPOPSD_CACHE", Path.home() / ".cache" / "stepopsd")).expanduser() / name
