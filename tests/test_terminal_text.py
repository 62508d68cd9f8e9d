"""Model and env text reaches the terminal as text: no control sequence, no rich markup read."""

import io
import math

from rich.console import Console
from typer.testing import CliRunner

from model_fixtures import tiny_model_dir  # noqa: F401  (pytest fixture)
from stepopsd.evaluate import format_table
from stepopsd.terminal import safe_text, visible_controls
from stepopsd.trajectory import Span, SpanKind, Step, Trajectory
from stepopsd.trajectory_io import save_trajectories
from stepopsd_cli.app import app

HOSTILE = "\x1b[2J\x1b]0;title\x07[/] [link=http://x]hi[/link] \x9b31m\u202eevil"
# what must never reach the output: clear screen, window title (OSC 0), hyperlink (OSC 8), CSI (C1), bidi override
SEQUENCES = ("\x1b[2J", "\x1b]0;", "\x1b]8;", "\x07", "\x9b", "\u202e")


def test_controls_are_written_out_and_tab_and_newline_kept():
    assert visible_controls(HOSTILE) == ("\\x1b[2J\\x1b]0;title\\x07[/] [link=http://x]hi[/link] \\x9b31m"
                                         "\\u202eevil")
    assert visible_controls("a\tb\nc\rd\x00\x7f") == "a\tb\nc\\rd\\x00\\x7f"
    assert safe_text("[bold]x[/]").plain == "[bold]x[/]"  # markup kept as text


def render(renderable) -> str:
    """What a colour terminal would receive (styles and hyperlinks on)."""
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, color_system="truecolor", width=200).print(renderable)
    return buffer.getvalue()


def test_an_env_task_type_in_the_success_table_is_printed_as_text():
    output = render(format_table({"success": {HOSTILE: 50.0, "Pick": math.nan, "All": 50.0}}, title=HOSTILE))
    assert not any(sequence in output for sequence in SEQUENCES)
    assert "[link=http://x]hi[/link]" in output and "-: no episodes of that type" in output


def hostile_trajectory(tokenizer) -> Trajectory:
    """One step whose action and generated tokens are the hostile text; credit attached as train dumps it."""
    action = HOSTILE
    response = f"<think>go</think><action>{action}</action>"
    response_ids = tokenizer.encode(action, add_special_tokens=False)
    prompt_ids, observation_ids = [1, 2, 3, 4], [5, 6, 7]
    end = 4 + len(response_ids)
    token_ids = prompt_ids + response_ids + observation_ids
    step = Step(index=0, response=response, thought="go", action=action, observation="You see.", reward=0.0,
                spans=(Span(SpanKind.THOUGHT, 7, 9, 5, 6), Span(SpanKind.ACTION, 25, 25 + len(action), 7, end),
                       Span(SpanKind.OBSERVATION, 0, 8, end, end + 3)),
                response_token_start=4, response_token_end=end)
    advantages = [0.0] * 4 + [1.5] * len(response_ids) + [0.0] * 3
    return Trajectory(trajectory_id=f"{HOSTILE}/0", task_id="task-1", env_id="stepopsd/FetchItem-v0", group_id=0,
                      prompt="Your task", steps=(step,), reward=0.0, success=False, token_ids=tuple(token_ids),
                      trainable_mask=(False,) * 4 + (True,) * len(response_ids) + (False,) * 3,
                      behaviour_logprobs=(0.0,) * len(token_ids),
                      metadata={"credit": {"outcome_advantage": 1.0, "token_advantages": advantages,
                                           "delta": [0.0] * len(token_ids)}})


def test_inspect_prints_hostile_actions_and_tokens_as_text(tmp_path, tiny_model_dir):  # noqa: F811
    from transformers import AutoTokenizer

    trajectories = tmp_path / "iter-1.jsonl"
    save_trajectories([hostile_trajectory(AutoTokenizer.from_pretrained(str(tiny_model_dir)))], trajectories)
    result = CliRunner().invoke(app, ["inspect", str(trajectories), "--tokenizer", str(tiny_model_dir),
                                      "--html", str(tmp_path / "credit.html")],
                                env={"FORCE_COLOR": "1", "COLUMNS": "400"})
    assert result.exit_code == 0 and result.exception is None, result.output
    assert not any(sequence in result.output for sequence in SEQUENCES), repr(result.output)
    assert "[link=http://x]hi[/link]" in result.output  # shown, not turned into a hidden link
    assert "\\x1b[2J" in result.output  # the sequence written out: the reader sees what the model produced
    page = (tmp_path / "credit.html").read_text()
    assert "[link=http://x]hi[/link]" in page and "<action>" not in page  # the page escapes as before
