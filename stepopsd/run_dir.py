"""The layout of a run directory, named in one place (the trainer writes it; eval, plot and
inspect read it).

    RUN/config.toml          the resolved config          RUN/metrics.jsonl   one JSON object per iteration
    RUN/summary.json         success before/after RL      RUN/tensorboard/    optional TensorBoard sink
    RUN/tiny_model/          the built tiny model         RUN/sft_model/      the SFT warm start
    RUN/checkpoints/iter-N/  accelerate states            RUN/final_model/    save_pretrained after RL
    RUN/trajectories/iter-N.jsonl  dumped trajectories with their credit
    RUN/.lock                held by the process running there (:func:`run_lock`)

Models, checkpoints and trajectory files are written beside their place as ``.tmp-NAME`` and moved
into it when whole (:func:`written_whole`), so a kill or a full disk never leaves half of one.

>>> RunDir("runs/quickstart").trajectories_file(15).as_posix()
'runs/quickstart/trajectories/iter-000015.jsonl'
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RunDir:
    """Paths inside one run directory (nothing is created here)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config_toml(self) -> Path:
        return self.root / "config.toml"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def metrics_jsonl(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def tiny_model(self) -> Path:
        return self.root / "tiny_model"

    @property
    def sft_model(self) -> Path:
        return self.root / "sft_model"

    @property
    def sft_state(self) -> Path:
        """The warm start's training state, one folder per phase, while it is being built."""
        return self.root / "sft_state"

    @property
    def final_model(self) -> Path:
        return self.root / "final_model"

    @property
    def model_folders(self) -> tuple[Path, ...]:
        """Every model folder a run may hold, newest stage first."""
        return self.final_model, self.sft_model, self.tiny_model

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, iteration: int) -> Path:
        return self.checkpoints / f"iter-{iteration:06d}"

    def partial_checkpoint(self, iteration: int) -> Path:
        """Where a checkpoint is written before its atomic rename to :meth:`checkpoint`."""
        return partial_path(self.checkpoint(iteration))

    @property
    def trajectories(self) -> Path:
        return self.root / "trajectories"

    def trajectories_file(self, iteration: int) -> Path:
        return self.trajectories / f"iter-{iteration:06d}.jsonl"

    @property
    def lock(self) -> Path:
        """The file :func:`run_lock` locks; not in :attr:`written`, so clearing a run keeps it."""
        return self.root / ".lock"

    @property
    def written(self) -> tuple[Path, ...]:
        """Everything a run writes here (what ``--overwrite`` deletes; nothing else is touched)."""
        return (self.config_toml, self.metrics_jsonl, self.summary_json, self.tensorboard, self.tiny_model,
                self.sft_state, self.sft_model, self.final_model, self.checkpoints, self.trajectories)

    @classmethod
    def of_trajectories_file(cls, path: str | Path) -> RunDir:
        """The run that dumped ``RUN/trajectories/iter-N.jsonl``."""
        return cls(Path(path).resolve().parent.parent)


def partial_path(path: Path) -> Path:
    """Where ``path`` is written before it is moved into place: ``.tmp-NAME`` beside it."""
    return path.with_name(f".tmp-{path.name}")


@contextmanager
def written_whole(path: str | Path) -> Iterator[Path]:
    """Yield :func:`partial_path` to write a file or a folder to; it replaces ``path`` only when the
    block ends without error. A kill or a full disk mid-write leaves ``path`` as it was: never half a
    model folder, which would pass for a whole one (``config.json`` is written first).

    >>> with written_whole(run.tiny_model) as partial:   # doctest: +SKIP
    ...     model.save_pretrained(partial)
    """
    path = Path(path)
    partial = partial_path(path)
    _remove(partial)  # left by a killed write
    try:
        yield partial
    except BaseException as error:
        _remove(partial)
        if is_write_failure(error):
            raise WriteFailedError(path, error, kept="the previous one is kept" if path.exists()
                                   else "nothing was written") from error
        raise
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(partial, path)


class WriteFailedError(OSError):
    """A file or folder could not be written (a full disk, no permission, a read-only mount); one line
    naming it, the reason and what is still on disk."""

    def __init__(self, path: Path, error: BaseException, kept: str) -> None:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else " ".join(str(error).split())
        super().__init__(f"could not write {path} ({reason}; disk full or not writable?); {kept}")


def is_write_failure(error: BaseException) -> bool:
    """An OSError, or safetensors' own error (it wraps the OS's, e.g. ``IoError(... StorageFull ...)``)."""
    safetensors = sys.modules.get("safetensors")  # loaded whenever it raised: no import for the others
    return isinstance(error, OSError) or (safetensors is not None and isinstance(error, safetensors.SafetensorError))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def check_model_source(path: str | Path) -> None:
    """Raise ValueError (one line) unless ``path`` is a model folder (holding ``config.json``) or
    could be a hub id (``name`` or ``org/name``, left to ``from_pretrained``)."""
    local = Path(path)
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ValueError(f"{path} is not a model folder (no config.json); give a folder written by "
                             "save_pretrained (e.g. by `stepopsd model init-tiny`) or a hub id")
    elif local.exists():
        raise ValueError(f"{path} is a file, not a model folder (a folder holding config.json)")
    elif str(path).startswith((".", "/", "~")) or str(path).count("/") > 1 or not str(path).strip():
        raise ValueError(f"no model folder at {path!r}")


def resolve_model(path: str | Path) -> tuple[Path, Path | None]:
    """(model folder, its run's config.toml or None) for a model folder or a finished run directory.

    Raises ValueError when ``path`` is neither.
    """
    run = RunDir(path)
    if (run.final_model / "config.json").is_file():
        return run.final_model, run.config_toml
    if (run.root / "config.json").is_file():
        parent_config = RunDir(run.root.parent).config_toml  # RUN/sft_model, RUN/final_model, ...
        return run.root, parent_config if parent_config.is_file() else None
    raise ValueError(f"{path} is neither a model folder (config.json) nor a finished run directory "
                     f"({run.final_model.name}/)")


class RunFolderError(ValueError):
    """A run folder cannot take a run as asked: it holds another run, a resumed run's config differs, or
    another process runs there."""


@contextmanager
def run_lock(run: RunDir) -> Iterator[None]:
    """Hold an exclusive lock on ``run`` (``flock`` on ``RUN/.lock``, which records this PID) for the
    block, creating the folder. Raises :class:`RunFolderError` when another process holds it; the
    kernel drops a dead process's lock, so a killed run leaves its folder free."""
    try:
        run.root.mkdir(parents=True, exist_ok=True)
        handle = open(run.lock, "a+", encoding="utf-8")
    except OSError as error:
        raise RunFolderError(f"cannot lock {run.lock} ({error.strerror}); choose another --out") from None
    with handle:
        _lock_or_raise(run, handle)
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def check_not_in_use(run: RunDir) -> None:
    """Raise :class:`RunFolderError` when another process holds ``run``'s :func:`run_lock` (writes nothing)."""
    if run.lock.is_file():
        with open(run.lock, encoding="utf-8") as handle:
            _lock_or_raise(run, handle)


def _lock_or_raise(run: RunDir, handle) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise RunFolderError(f"{run.root} is in use by PID {handle.read().strip() or '?'}; wait for that run to end, "
                             "or choose another --out") from None


def check_run_folder(run: RunDir, config, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse, before any work, a run that would mix with or destroy what ``run`` holds.

    A fresh run needs a new or empty folder; ``overwrite`` lets it take a folder holding a run,
    which :func:`clear_run` then deletes; ``resume`` continues the run there, whose saved config
    must equal ``config`` (a :class:`~stepopsd.config.TrainConfig`) in all but ``run.iterations``.
    Raises :class:`RunFolderError` with a one-line message saying how to proceed.
    """
    if resume and overwrite:
        raise RunFolderError("--resume continues the run in the folder and --overwrite deletes it; give one of them")
    if run.root.exists() and not run.root.is_dir():
        raise RunFolderError(f"{run.root} is a file; the run needs a folder (--out)")
    present = [path.name for path in run.written if path.exists()]
    if not present:
        if run.root.is_dir() and any(path != run.lock for path in run.root.iterdir()):
            raise RunFolderError(f"{run.root} is not empty and holds no stepopsd run; choose a new or empty --out")
        return
    if overwrite:
        return
    if not resume:
        raise RunFolderError(f"{run.root} already holds a run ({', '.join(present)}); pass --resume to continue it, "
                             "--overwrite to delete it and start again, or choose a new --out")
    differing = _differences_from_saved(run, config)
    if differing:
        raise RunFolderError(f"cannot resume {run.root}: its saved config differs in {differing}; resume with the "
                             f"saved settings (--config {run.config_toml} and a larger run.iterations), or start a "
                             "new --out")


def _differences_from_saved(run: RunDir, config) -> str:
    """``"optim.lr (0.0001 here, 1e-05 saved)"``, one entry per differing field; "" when none differ."""
    from stepopsd.config import load_train_config
    from stepopsd.configtree import ConfigError, config_diff

    if not run.config_toml.is_file():
        raise RunFolderError(f"cannot resume {run.root}: it holds no {run.config_toml.name} to check the config "
                             "against; pass --overwrite to start again there, or choose a new --out")
    try:
        saved = load_train_config(str(run.config_toml), {})
    except ConfigError as error:
        raise RunFolderError(f"cannot resume {run.root}: its saved config does not load ({error}); "
                             "pass --overwrite to start again there, or choose a new --out") from None
    differing = config_diff(config, saved, ignore=("run.iterations",))
    return ", ".join(f"{key} ({ours!r} here, {theirs!r} saved)" for key, (ours, theirs) in differing.items())


def clear_run(run: RunDir) -> None:
    """Delete what a run wrote in ``run`` (:attr:`RunDir.written`), leaving any other file."""
    for path in run.written:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
