"""Atomic checkpoints: what ``accelerate`` saves (model as safetensors, optimizer, RNG states), the
counters as JSON (``train_state.json``) and the stale teacher as safetensors (``teacher.safetensors``).

Resuming runs no code stored in a run folder. Nothing is registered with
``accelerator.register_for_checkpointing`` (accelerate loads those objects with
``torch.load(weights_only=False)``, so a planted pickle's ``__reduce__`` would run); accelerate
loads the optimizer and RNG states with ``weights_only=True``; and before anything is loaded, every
file of a checkpoint but JSON and safetensors must load with ``weights_only=True``
(:func:`check_loads_safely`), or resuming is refused with :class:`UnsafeCheckpointError`.

A checkpoint is written to ``RUN/checkpoints/.tmp-iter-NNNNNN``, listed in its ``manifest.json``
(every file with its size) and renamed to ``iter-NNNNNN`` only once complete (the rename is
atomic), so a run killed during a save leaves the last good checkpoint untouched. A checkpoint
damaged later (a truncated copy, a full disk) fails :func:`checkpoint_problem`, and
:func:`restore_latest` falls back to the previous one with a warning.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

from stepopsd.run_dir import RunDir, RunFolderError, WriteFailedError, is_write_failure

MANIFEST = "manifest.json"  # {relative file path: size in bytes}, written last
COUNTERS = "train_state.json"  # TrainState.state_dict()
TEACHER = "teacher.safetensors"  # the stale teacher's weights


class UnsafeCheckpointError(RunFolderError):
    """A checkpoint holds a file that only an unrestricted pickle load could read; resuming from it is refused."""


def save_checkpoint(accelerator, run: RunDir, iteration: int, state, teacher=None, keep_last: int = 2) -> Path | None:
    """Save the model, optimizer and RNG states, ``state``'s counters and the ``teacher`` model (None: a live
    teacher, which is the policy) after ``iteration``; keep the newest ``keep_last`` checkpoints."""
    from safetensors.torch import save_model

    final, partial = run.checkpoint(iteration), run.partial_checkpoint(iteration)
    try:
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(partial), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (partial / COUNTERS).write_text(json.dumps(state.state_dict()), encoding="utf-8")
            if teacher is not None:
                save_model(teacher, str(partial / TEACHER))  # save_model keeps one copy of tied weights
            sizes = {path.relative_to(partial).as_posix(): path.stat().st_size
                     for path in sorted(partial.rglob("*")) if path.is_file()}
            (partial / MANIFEST).write_text(json.dumps(sizes, indent=1), encoding="utf-8")
    except BaseException as error:
        shutil.rmtree(partial, ignore_errors=True)
        if is_write_failure(error):
            raise WriteFailedError(final, error, kept="the earlier checkpoints are kept") from error
        raise
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in list_checkpoints(run)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final if accelerator.is_main_process else None


def list_checkpoints(run: RunDir) -> list[Path]:
    """Checkpoint folders, oldest first (half-written ``.tmp-*`` folders are ignored)."""
    if not run.checkpoints.is_dir():
        return []
    return sorted(p for p in run.checkpoints.glob("iter-*") if p.is_dir())


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be restored (a file missing or cut short), or None when it looks whole."""
    from safetensors import SafetensorError, safe_open

    if not (checkpoint / COUNTERS).is_file():
        return f"{COUNTERS} is missing (a checkpoint of an older stepopsd, or cut short)"
    manifest = checkpoint / MANIFEST
    if manifest.is_file():  # checkpoints of older versions have none: their safetensors are still checked
        try:
            sizes = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return f"its {MANIFEST} is unreadable"
        for name, size in sizes.items():
            path = checkpoint / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != size:
                return f"{name} holds {path.stat().st_size} of its {size} bytes"
    for path in sorted(checkpoint.rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (OSError, SafetensorError) as error:
            return f"{path.name} does not load ({error})"
    return None


def check_loads_safely(checkpoint: Path) -> None:
    """Raise :class:`UnsafeCheckpointError` naming the first file of ``checkpoint`` that is neither JSON
    nor safetensors and does not load with ``torch.load(weights_only=True)`` (tensors, numbers and
    containers only: what accelerate writes for the optimizer and RNG states)."""
    import pickle

    from accelerate.utils import load  # torch.load, allowing the numpy arrays of accelerate's RNG states

    for path in sorted(checkpoint.rglob("*")):
        if not path.is_file() or path.suffix in (".json", ".safetensors"):
            continue
        try:
            load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: tensors are not read
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError):
            raise UnsafeCheckpointError(
                f"refusing to resume from {checkpoint}: {path.relative_to(checkpoint)} does not load with "
                "torch.load(weights_only=True), so loading it could run code stored in it; stepopsd writes no such "
                "file and needs none: delete it to resume, or start a new --out") from None


def usable_checkpoints(run: RunDir) -> list[Path]:
    """Checkpoints without a :func:`checkpoint_problem`, newest first; each damaged one is warned about.
    Raises :class:`UnsafeCheckpointError` when one holds a file :func:`check_loads_safely` refuses."""
    usable = []
    for checkpoint in reversed(list_checkpoints(run)):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            check_loads_safely(checkpoint)
            usable.append(checkpoint)
        else:
            warnings.warn(f"checkpoint {checkpoint} is damaged ({problem}); skipped", stacklevel=3)
    return usable


def latest_checkpoint(run: RunDir) -> Path | None:
    """The newest usable checkpoint (see :func:`usable_checkpoints`), or None."""
    usable = usable_checkpoints(run)
    return usable[0] if usable else None


def load_checkpoint(accelerator, checkpoint: Path, state, teacher=None) -> None:
    """Restore what :func:`save_checkpoint` saved in ``checkpoint`` (checked by :func:`check_loads_safely`)."""
    from safetensors.torch import load_model

    accelerator.load_state(str(checkpoint), load_kwargs={"weights_only": True})
    state.load_state_dict(json.loads((checkpoint / COUNTERS).read_text(encoding="utf-8")))
    if teacher is not None:
        load_model(teacher, str(checkpoint / TEACHER))


def restore_latest(accelerator, checkpoints: list[Path], state, teacher=None) -> Path:
    """Restore the first of ``checkpoints`` (newest first, from :func:`usable_checkpoints`) that
    loads; one that fails is warned about and the next taken (each load restores everything, so
    nothing mixes). The error of the last is raised when none loads."""
    import pickle

    from safetensors import SafetensorError

    for index, checkpoint in enumerate(checkpoints):
        try:
            load_checkpoint(accelerator, checkpoint, state, teacher)
            return checkpoint
        except (OSError, EOFError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError,
                SafetensorError) as error:
            if index == len(checkpoints) - 1:
                raise
            warnings.warn(f"checkpoint {checkpoint} does not load ({type(error).__name__}: {error}); "
                          f"taking {checkpoints[index + 1].name}", stacklevel=2)
    raise ValueError("no checkpoint to restore")
