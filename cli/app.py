"""The ``stepopsd`` command line: one typer app per command group (``cli/*_cmd.py``, each with a
module-level ``app``), added here. Torch and transformers are imported inside commands only."""

from __future__ import annotations

import typer

from stepopsd_cli import (
    audit_cmd, config_cmd, data_cmd, envs_cmd, eval_cmd, index_cmd, inspect_cmd, model_cmd, plot_cmd, rollout_cmd,
    serve_cmd, sft_cmd, train_cmd,
)

app = typer.Typer(
    name="stepopsd",
    help="StepOPSD: step-aware hindsight credit assignment for GRPO on multi-turn LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (envs_cmd, rollout_cmd, sft_cmd, train_cmd, eval_cmd, plot_cmd, inspect_cmd, config_cmd, serve_cmd):
    app.add_typer(command.app)  # single-command apps: their command joins the root
app.add_typer(model_cmd.app, name="model")
app.add_typer(index_cmd.app, name="index")
app.add_typer(data_cmd.app, name="data")
app.add_typer(audit_cmd.app)


def main() -> None:
    import warnings

    from stepopsd.allocator import keep_freed_memory

    warnings.formatwarning = _one_line_warning
    keep_freed_memory()
    app()


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings on the command line as ``warning: ...`` lines (no source location, no code echo)."""
    return f"warning: {' '.join(str(message).split())}\n"
