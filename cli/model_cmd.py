"""``stepopsd model``: build local models (no hub access)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from stepopsd_cli.errors import check_new_folder, fail

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def model() -> None:
    """Build local models (no hub access)."""


@app.command("init-tiny")
def init_tiny(
    out: Annotated[Path, typer.Option(help="Folder to write the model and tokenizer to (created).")],
    seed: Annotated[int, typer.Option(help="Seed of the weight initialisation.")] = 0,
    hidden_size: Annotated[int, typer.Option(
        help="Hidden size, a positive multiple of 32 (the head dim; 128 gives ~1M parameters).")] = 128,
    layers: Annotated[int, typer.Option(min=1, help="Number of transformer layers.")] = 4,
    alfworld_data: Annotated[Path | None, typer.Option(
        help="A folder of ALFWorld games whose text the tokenizer also learns (default: none, so the same "
             "tokenizer on every machine).")] = None,
    searchqa_text: Annotated[bool, typer.Option(
        help="Also train the tokenizer on a generated Search-QA world's transcripts (its invented names' "
             "syllables), as quickstart-searchqa does.")] = False,
    searchqa_world: Annotated[str | None, typer.Option(
        help='And on the passages of this generated world, as JSON of the SearchQA env\'s world= keys '
             '(e.g. \'{"seed": 0, "entities": 200}\'): its names become whole tokens.')] = None,
    vocab_size: Annotated[int, typer.Option(min=1, help="Tokenizer vocabulary size (at most; 4096 leaves "
                                                        "room for a world's names).")] = 2048,
    alfworld_text: Annotated[bool, typer.Option(
        help="Also train the tokenizer on ALFWorld prompts of generated scenes (every object and receptacle "
             "name one token), as quickstart-alfworld does; needs alfworld installed.")] = False,
) -> None:
    """Build a tiny Qwen3 model + BPE tokenizer trained on env text; loads with from_pretrained."""
    from stepopsd.lab.tiny import TinyModelSpec, build_tiny_model

    check_new_folder(out)
    if alfworld_data is not None and not alfworld_data.is_dir():
        fail(f"--alfworld-data {alfworld_data} is not a folder (of ALFWorld game folders)")
    if hidden_size < 32 or hidden_size % 32:
        fail(f"--hidden-size must be a positive multiple of 32 (the head dim: one attention head per 32), "
             f"got {hidden_size}")
    heads = hidden_size // 32
    kv_heads = heads // 2 if heads % 2 == 0 else 1  # grouped-query attention: the kv heads divide the heads
    try:
        world = json.loads(searchqa_world) if searchqa_world is not None else {}
    except json.JSONDecodeError as error:
        fail(f"--searchqa-world is not valid JSON ({error})")
    try:
        spec = TinyModelSpec(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=3 * hidden_size,
                             num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                             seed=seed, searchqa_text=searchqa_text, searchqa_world=world, alfworld_text=alfworld_text)
    except ValueError as error:
        fail(str(error))
    from stepopsd.run_dir import WriteFailedError

    try:
        build_tiny_model(out, spec, alfworld_data)
    except WriteFailedError as error:
        fail(str(error), exit_code=1)
    typer.echo(f"wrote tiny model to {out}")
