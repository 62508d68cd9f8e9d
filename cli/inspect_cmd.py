"""``stepopsd inspect``: one trajectory group's step-level credit, in the terminal and as HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from stepopsd_cli.errors import check_token_ids, fail

app = typer.Typer(add_completion=False)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def find_tokenizer(trajectories_file: Path) -> Path | None:
    """RUN/trajectories/iter-N.jsonl -> the run's newest model folder holding a tokenizer."""
    from stepopsd.run_dir import RunDir

    folders = RunDir.of_trajectories_file(trajectories_file).model_folders
    return next((folder for folder in folders if (folder / "tokenizer.json").is_file()), None)


@app.command("inspect")
def inspect(
    trajectories: Annotated[Path, typer.Argument(help="A trajectories JSONL dumped by stepopsd train.")],
    group: Annotated[Optional[int], typer.Option(help="Group id (default: the first mixed group).")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="Tokenizer folder (default: the run's model).")] = None,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Write a self-contained HTML page here.")] = None,
) -> None:
    """Per step: GRPO advantage, shaped token advantages and teacher gap, colour-coded."""
    from stepopsd.inspect_view import render_html

    chosen = _chosen_group(trajectories, group)
    if html_out is not None:
        if html_out.is_dir():
            fail(f"--html {html_out} is a folder; give a file, e.g. {html_out / 'credit.html'}")
        if not html_out.parent.is_dir():
            fail(f"--html {html_out}: the folder {html_out.parent} does not exist")
    tokenizer = tokenizer or find_tokenizer(trajectories)
    if tokenizer is None:
        fail("could not find the run's tokenizer; pass --tokenizer MODEL_DIR")
    if not (tokenizer.is_dir() and any((tokenizer / name).is_file() for name in TOKENIZER_FILES)):
        fail(f"--tokenizer {tokenizer} is not a tokenizer folder (no {' or '.join(TOKENIZER_FILES)})")
    from rich.console import Console
    from transformers import AutoTokenizer

    try:
        decoder = AutoTokenizer.from_pretrained(str(tokenizer))
    except (OSError, ValueError) as error:
        fail(f"could not load a tokenizer from {tokenizer}: {error}")
    check_token_ids(chosen.trajectories, trajectories, tokenizer, "--tokenizer", len(decoder))
    decode = lambda token_id: decoder.decode([token_id])  # noqa: E731
    console = Console()
    for traj in chosen.trajectories:
        for renderable in _terminal_view(traj, decode):
            console.print(renderable)
    if html_out is not None:
        html_out.write_text(render_html(chosen, decode, title=str(trajectories)), encoding="utf-8")
        typer.echo(f"wrote {html_out}")


def _chosen_group(path: Path, group: int | None):
    """The group to show from ``path``; unreadable lines are a one-line warning, no trajectory or no
    credit a one-line error."""
    from stepopsd.inspect_view import credit_of, pick_group
    from stepopsd.trajectory_io import TrajectoryFileError, load_trajectories

    try:
        trajectories = load_trajectories(path)
    except TrajectoryFileError as error:
        if not error.valid:
            fail(f"{error}; inspect a file written by stepopsd train (RUN/trajectories/iter-N.jsonl)")
        typer.echo(f"warning: {error}; showing the {len(error.valid)} readable ones", err=True)
        trajectories = error.valid
    except OSError as error:  # missing file, a folder
        fail(str(error))
    try:
        chosen = pick_group(trajectories, group)
        for traj in chosen.trajectories:
            credit_of(traj)
    except ValueError as error:
        fail(f"{path}: {error}")
    return chosen


def _terminal_view(traj, decode):
    """A step table and the generated tokens on green (more credit than GRPO) or red (less)."""
    from rich.table import Table
    from rich.text import Text

    from stepopsd.inspect_view import credit_of, relative_credit, step_credits
    from stepopsd.terminal import safe_text, visible_controls

    credit = credit_of(traj)
    outcome = credit["outcome_advantage"]
    title = f"{traj.trajectory_id}  {'success' if traj.success else 'failure'}  GRPO A = {outcome:+.3f}"
    table = Table("step", "action", "mean Δ", "mean A~", "A~/A - 1", title=safe_text(title))
    for row in step_credits(traj):
        table.add_row(str(row.index), safe_text(row.action) if row.action else Text("(invalid)", style="red"),
                      f"{row.delta_mean:+.4f}", f"{row.advantage_mean:+.4f}",
                      f"{relative_credit(row.advantage_mean, outcome):+.3f}")
    text = Text()
    for token_id, trainable, advantage in zip(traj.token_ids, traj.trainable_mask, credit["token_advantages"]):
        if trainable:
            relative = relative_credit(advantage, outcome)
            style = "on dark_green" if relative > 1e-6 else "on dark_red" if relative < -1e-6 else ""
            text.append(visible_controls(decode(token_id)), style=style)
    return table, text
