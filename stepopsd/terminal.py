"""What the CLI prints of model and env text: no control sequence reaches the terminal, no rich markup is read.

Generated actions, observations and env error messages are untrusted text: an escape sequence in
them could clear the screen, retitle the window or hide a hyperlink, and a ``[/]`` in them crashes
rich's markup parser. Everything the CLI prints of such text goes through :func:`visible_controls`
(plain output) or :func:`safe_text` (rich tables and text); :func:`errors_summary` is the one line
that reports episodes an env ended by raising.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

from stepopsd.trajectory import Trajectory

# C0 except tab and newline, DEL, C1, and the bidi overrides/isolates that reorder a line on screen
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible_controls(text: str) -> str:
    r"""``text`` with every control character written out as ``\xNN`` / ``\uNNNN`` (tab and newline kept).

    >>> visible_controls("go\x1b[2J\tnorth\n")
    'go\\x1b[2J\tnorth\n'
    """
    return _CONTROL.sub(lambda match: ascii(match.group())[1:-1], text)


def safe_text(text: str, style: str = ""):
    """A rich ``Text`` of ``text`` with controls made visible: printed as is, never parsed as markup."""
    from rich.text import Text

    return Text(visible_controls(text), style=style)


def episode_errors(trajectories: Sequence[Trajectory]) -> list[str]:
    """The error of every episode the env (or its prompt hook) ended by raising, in order."""
    return [traj.metadata["error"] for traj in trajectories if "error" in traj.metadata]


def errors_summary(errors: Sequence[str], episodes: int) -> str:
    """One line: how many of ``episodes`` ended in an error, and the first one (shortened, controls visible)."""
    first = visible_controls(textwrap.shorten(errors[0], 300, placeholder=" ...")) if errors else ""
    return f"{len(errors)} of {episodes} episodes ended in an env error (first: {first})"
