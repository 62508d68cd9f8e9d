"""``stepopsd credit-audit``: where does each method put a failed trajectory's blame?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from stepopsd.choices import AUDIT_CONTROLS, HINDSIGHT_CONTROLS, MISTAKE_LABELS
from stepopsd_cli.errors import check_token_ids, fail
from stepopsd_cli.options import SET_HELP, choice_enum, config_overrides, load_config, output_folder

app = typer.Typer(add_completion=False)
MistakeLabel = choice_enum("MistakeLabel", MISTAKE_LABELS)
AuditControl = choice_enum("AuditControl", AUDIT_CONTROLS)


@app.command("credit-audit")
def credit_audit(
    trajectories: Annotated[Path, typer.Argument(help="Trajectories JSONL with per-step labels: a run's "
                                                      "trajectories/iter-N.jsonl or `stepopsd rollout --model M --group 8`.")],
    model: Annotated[Optional[Path], typer.Option(help="Teacher model folder (default: the run's newest model; "
                                                       "none found: only grpo, oracle, peer_diff and gigpo).")] = None,
    label: Annotated[MistakeLabel, typer.Option(help="Where a step's mistake label comes from: the env's "
                                                     "info['mistake'] or, noisy, a differing expert_action.")] = MistakeLabel("mistake"),
    temperature: Annotated[float, typer.Option(help="The rollout's sampling temperature.")] = 1.0,
    config: Annotated[Optional[str], typer.Option(help="Config giving the algorithm settings (span mode, alpha, lambda).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help=SET_HELP)] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the AUC table and per-trajectory AUCs here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a bar chart of the AUCs here (.png, .pdf or .svg).")] = None,
    clip_grid: Annotated[Optional[list[float]], typer.Option(
        help="Also recompute the conserved_step_share column at these Eq. 3 clips (repeatable: "
             "--clip-grid 0.2 --clip-grid 0.5): how much of Delta's ranking the clip keeps.")] = None,
    control: Annotated[Optional[list[AuditControl]], typer.Option(
        help=f"The teacher's hindsight arms (repeatable; default: {', '.join(HINDSIGHT_CONTROLS)}). "
             "swapped_peer: the group's own peer with its parcel choices swapped, a null.")] = None,
) -> None:
    """AUC with which each arm's step credit ranks the labelled mistake step first (1: always, 0.5: no information)."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from stepopsd.lab.credit_audit import COLUMN_TITLES, audit_credit, clip_table
    from stepopsd.trajectory_io import TrajectoryFileError, load_trajectories

    from stepopsd.choices import ALPHA_CLIP_RANGE

    if any(alpha not in ALPHA_CLIP_RANGE for alpha in clip_grid or ()):
        fail(f"--clip-grid {clip_grid}: every alpha_clip must lie in {ALPHA_CLIP_RANGE}")
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        fail(f"--plot {plot}: the suffix must be .png, .pdf or .svg")
    if not trajectories.is_file():
        fail(f"no trajectory file at {trajectories}")
    algorithm = load_config(config, config_overrides(set_ or [], {})).algorithm
    try:
        loaded = load_trajectories(trajectories)
    except (TrajectoryFileError, ValueError) as error:
        fail(str(error))
    teacher, tokenize = _teacher(model or _run_model(trajectories), loaded, trajectories)
    with Progress(transient=True) as progress:
        task = progress.add_task("auditing", total=None)
        result = audit_credit(loaded, algorithm, teacher=teacher, tokenize=tokenize, temperature=temperature,
                              label=label.value, clip_grid=tuple(clip_grid or ()),
                              controls=tuple(dict.fromkeys(c.value for c in control)) if control else HINDSIGHT_CONTROLS,
                              progress=lambda done, total: progress.update(task, completed=done, total=total))
    if result.num_audited == 0:
        fail(f"no failed trajectory of a mixed group with {label.value!r} labels on both a mistake and a harmless "
             f"step in {trajectories}; roll out groups (--group 8) on an env that labels its steps"
             + (" (ALFWorld gives expert_action only when asked: --env-kwargs '{\"expert_actions\": true}')"
                if label.value == "expert_action" else ""), exit_code=1)
    table = Table("arm", *COLUMN_TITLES.values(), title=f"mistake-step AUC over {result.num_audited} failed "
                                                       f"trajectories of mixed groups (95% CI)")
    for arm, cells in result.table.items():
        table.add_row(arm, *(f"{cells[c]['mean']:.3f} [{cells[c]['ci_low']:.2f}, {cells[c]['ci_high']:.2f}]"
                             if cells[c]["n"] else "-" for c in COLUMN_TITLES))
    Console().print(table)
    if clip_grid:
        typer.echo(clip_table(result.table))
    if json_out is not None:
        output_folder(json_out.parent)
        json_out.write_text(json.dumps({"label": result.label, "num_audited": result.num_audited,
                                        "table": result.table, "per_trajectory": result.per_trajectory}, indent=1))
        typer.echo(f"wrote {json_out}")
    if plot is not None:
        from stepopsd.lab.credit_audit import plot_table

        output_folder(plot.parent)
        plot_table(result.table, plot)
        typer.echo(f"wrote {plot}")


def _run_model(trajectories: Path) -> Path | None:
    from stepopsd.run_dir import RunDir

    folders = RunDir.of_trajectories_file(trajectories).model_folders
    return next((folder for folder in folders if (folder / "config.json").is_file()), None)


def _teacher(model: Path | None, trajectories, path: Path):
    """The teacher model and its tokenizer, once every token id of ``trajectories`` fits its vocabulary."""
    if model is None:
        typer.echo("no teacher model: auditing grpo, oracle, peer_diff and gigpo only (pass --model for the hindsight arms)")
        return None, None
    from stepopsd.policy import ModelFolderError, encode, load_policy

    if not (model / "config.json").is_file():
        fail(f"{model} is not a model folder (no config.json)")
    check_token_ids(trajectories, path, model, "--model")
    try:
        policy = load_policy(model)
    except ModelFolderError as error:
        fail(str(error))
    return policy.model, lambda text: encode(policy, text)
