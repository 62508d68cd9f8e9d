"""Run logging: JSONL always, TensorBoard and wandb when installed and asked for."""

from __future__ import annotations

import json
import math
from pathlib import Path

from stepopsd.run_dir import RunDir, WriteFailedError


class MetricsLogger:
    """Appends one JSON object per iteration to ``RUN/metrics.jsonl`` (and optional sinks)."""

    def __init__(self, run: RunDir, *, tensorboard: bool = False, wandb_project: str = "") -> None:
        self.path = run.metrics_jsonl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tensorboard = None
        self._wandb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # needs the `tensorboard` package

            self._tensorboard = SummaryWriter(str(run.tensorboard))
        if wandb_project:
            import wandb

            self._wandb = wandb.init(project=wandb_project, dir=str(run.root))

    def log(self, iteration: int, metrics: dict[str, float]) -> None:
        record = {"iteration": iteration, **{k: _plain(v) for k, v in metrics.items()}}
        size = self.path.stat().st_size if self.path.exists() else 0
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as error:  # a full disk: no half line is left for a resume to trip over
            with open(self.path, "r+b") as handle:
                handle.truncate(size)
            raise WriteFailedError(self.path, error, kept="the earlier iterations' records are kept") from error
        if self._tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "iteration":
                    self._tensorboard.add_scalar(key, value, iteration)
        if self._wandb is not None:
            self._wandb.log(record, step=iteration)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()


def _plain(value):
    """Tensors and numpy scalars to floats; NaN/inf kept as strings JSON can hold."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All records of a run's metrics file; a torn last line (killed run) is skipped."""
    path = RunDir(run_dir).metrics_jsonl
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {path.name}; is it a stepopsd run directory?")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(run_dir: str | Path, last_iteration: int) -> None:
    """Drop records after ``last_iteration`` (a resumed run rewrites them)."""
    path = RunDir(run_dir).metrics_jsonl
    if path.is_file():
        kept = [r for r in read_metrics(run_dir) if r["iteration"] <= last_iteration]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
