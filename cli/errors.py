"""User errors: one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

# gymnasium.make's own keyword arguments; every other one goes to the env's constructor
MAKE_KWARGS = {"max_episode_steps", "disable_env_checker"}


def fail(message: str, exit_code: int = 2) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit (2: usage errors, 1: a failed run)."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(exit_code)


def check_env_id(env_id: str, key: str = "") -> None:
    """Fail with the registered ids when ``env_id`` is unknown (``key``: the config field it came from)."""
    import gymnasium
    import stepopsd_envs  # noqa: F401  (registers the envs)

    if env_id not in gymnasium.registry:
        known = ", ".join(stepopsd_envs.registered_env_ids())
        where = f" ({key})" if key else ""
        fail(f"unknown env id {env_id!r}{where}; registered envs: {known} (`stepopsd envs` describes them)")


def check_env_kwargs(env_id: str, kwargs: dict, source: str) -> None:
    """Fail when ``kwargs`` name an option the env's constructor does not take (checked without making it)."""
    import inspect

    from stepopsd_envs.plugins import env_class

    try:
        parameters = inspect.signature(env_class(env_id)).parameters
    except (ImportError, AttributeError, TypeError, ValueError):  # the env cannot be inspected: make() will tell
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = sorted(set(kwargs) - set(accepted) - MAKE_KWARGS)
    if unknown:
        fail(f"{source}: {env_id} takes no option {', '.join(map(repr, unknown))}; its options: "
             f"{', '.join(sorted(set(accepted) | MAKE_KWARGS))}")


def make_env(env_id: str, **kwargs):
    """``gymnasium.make`` with user-facing errors for unknown ids and bad options."""
    import gymnasium

    check_env_id(env_id)
    try:
        return gymnasium.make(env_id, **kwargs)
    except (ImportError, OSError, TypeError, ValueError, gymnasium.error.Error) as error:
        fail(f"could not make {env_id}: {error}")


def check_model_folder(path: Path | str, option: str = "--model") -> None:
    """Fail unless ``path`` is a model folder (config.json) or could be a hub id."""
    from stepopsd.run_dir import check_model_source

    try:
        check_model_source(path)
    except ValueError as error:
        fail(f"{option}: {error}")


def check_new_folder(path: Path, option: str = "--out") -> None:
    """Fail unless ``path`` is a new or empty folder (nothing in it is replaced) that can be written."""
    if path.exists() and not path.is_dir():
        fail(f"{option} {path} is a file; give a new or empty folder")
    if path.is_dir() and any(path.iterdir()):
        fail(f"{option} {path} is not empty; choose a new or empty folder (nothing in it is replaced)")
    check_writable(path, option)


def check_writable(path: Path, option: str = "--out") -> None:
    """Fail unless a file can be made beside ``path`` (where its whole-or-nothing copy is written first), or
    in the nearest folder above it that exists: a read-only folder or mount is found before the work."""
    import tempfile

    folder = next(parent for parent in path.absolute().parents if parent.exists())
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        fail(f"{option} {path}: cannot write in {folder} ({error.strerror}); choose a writable location")


def check_output_file(path: Path, *, overwrite: bool, option: str = "--out") -> None:
    """Before any work: ``path`` can be written (its folder is created now) and replaces nothing unless ``overwrite``."""
    if path.is_dir():
        fail(f"{option} {path} is a folder; give a file path inside it, e.g. {path / 'trajectories.jsonl'}")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        fail(f"{option} {path}: {blocking} is a file, so it cannot hold {path.name}; choose another path")
    if path.exists() and not overwrite:
        fail(f"{option} {path} exists; pass --overwrite to replace it, or choose another path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"{option} {path}: cannot create {path.parent} ({error.strerror})")
    check_writable(path, option)


def check_token_ids(trajectories, path: Path, model: Path, option: str, tokenizer_size: int = 0) -> None:
    """Fail naming the first token id of ``path``'s trajectories that the model in ``model`` cannot have
    emitted: one past config.json's vocab_size (its embedding rows; ids past the tokenizer's last one are
    legal and decode to nothing) or, without one, past ``tokenizer_size``."""
    import json

    from stepopsd.trajectory import SchemaError, check_vocabulary

    try:
        declared = json.loads((model / "config.json").read_text()).get("vocab_size")
    except (OSError, ValueError, AttributeError):  # a tokenizer-only folder, or a config.json that is no object
        declared = None
    try:
        check_vocabulary(trajectories, max(declared if type(declared) is int else 0, tokenizer_size))
    except SchemaError as error:
        fail(f"{path}: {error}; written with another tokenizer? pass the {option} of the run that wrote it")
