"""batch.py: one right-padded row per trajectory (full mode) or per step (window mode)."""

import pytest
import torch

from algo_fixtures import make_trajectory
from stepopsd.batch import build_batch, is_window_mode, row_ranges

TURNS = [("ab", "go", "ok"), ("c", "x", "end")]
FULL = make_trajectory("P", TURNS, success=True, trajectory_id="full")  # 106 tokens, generated [13,50) [71,106)
SHORT = make_trajectory("P", TURNS[:1], success=False, trajectory_id="short")  # 50 tokens, generated [13, 50)
WINDOW = make_trajectory("P", TURNS, success=False, window=True)  # steps (0, 20, 57), (57, 79, 114)


def _advantages(traj, value):
    return torch.full((len(traj.token_ids),), value)


def test_full_mode_one_row_per_trajectory_right_padded():
    batch = build_batch([FULL, SHORT], [_advantages(FULL, 2.0), _advantages(SHORT, -1.0)], pad_id=7)
    assert batch.input_ids.shape == (2, 106)
    assert batch.input_ids[1, :50].tolist() == list(SHORT.token_ids) and (batch.input_ids[1, 50:] == 7).all()
    assert batch.attention_mask[1].sum() == 50 and batch.attention_mask[0].sum() == 106
    assert torch.equal(batch.trainable_mask[0], torch.tensor(FULL.trainable_mask))
    assert batch.trainable_mask[1, :50].sum() == 37 and not batch.trainable_mask[1, 50:].any()
    # advantages and behaviour log-probs live only on trainable tokens
    assert torch.equal(batch.advantages[0], 2.0 * batch.trainable_mask[0])
    assert torch.equal(batch.advantages[1], -1.0 * batch.trainable_mask[1])
    assert torch.equal(batch.behaviour_logprobs[0], torch.tensor(FULL.behaviour_logprobs))
    assert batch.row_trajectory.tolist() == [0, 1] and batch.row_offset.tolist() == [0, 0]


def test_window_mode_one_row_per_step():
    assert is_window_mode(WINDOW) and not is_window_mode(FULL)
    assert row_ranges(WINDOW) == [(0, 57, 20, 57), (57, 114, 79, 114)]
    batch = build_batch([WINDOW], [torch.arange(114, dtype=torch.float32)])
    assert batch.num_rows == 2 and batch.input_ids.shape == (2, 57)
    assert batch.input_ids[1].tolist() == list(WINDOW.token_ids[57:114])
    assert batch.trainable_mask[1].nonzero().flatten().tolist() == list(range(22, 57))  # tokens 79..113
    assert batch.advantages[1, 22].item() == 79.0 and batch.advantages[1, 21].item() == 0.0
    assert batch.row_trajectory.tolist() == [0, 0] and batch.row_offset.tolist() == [0, 57]


def test_mismatched_advantages_are_refused():
    with pytest.raises(ValueError, match="advantage"):
        build_batch([FULL, SHORT], [_advantages(FULL, 1.0)])


def test_select_cuts_rows_to_the_longest_chosen_one():
    batch = build_batch([FULL, SHORT], [_advantages(FULL, 2.0), _advantages(SHORT, -1.0)], pad_id=7)
    short_only = batch.select(torch.tensor([1]))
    assert short_only.input_ids.shape == (1, 50)  # SHORT has 50 tokens: the 56 columns of padding go
    assert short_only.input_ids[0].tolist() == list(SHORT.token_ids)
    assert torch.equal(short_only.advantages[0], batch.advantages[1, :50])
    assert short_only.row_trajectory.tolist() == [1]
    both = batch.select(torch.tensor([1, 0]))
    assert both.input_ids.shape == (2, 106) and torch.equal(both.input_ids[1], batch.input_ids[0])


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_right_padded_logits_are_the_masked_forwards_on_real_tokens(attention):
    """The unmasked forward of right-padded rows (policy update, KL reference, teacher windows) gives
    every real token the log-prob of the masked reference; logits_to_keep keeps the last columns."""
    from algo_fixtures import tiny_qwen3
    from stepopsd.logprobs import right_padded_logits, sequence_logprobs, token_logprobs

    model = tiny_qwen3(seed=0, attn_implementation=attention)
    batch = build_batch([FULL, SHORT], [_advantages(FULL, 2.0), _advantages(SHORT, -1.0)], pad_id=7)
    real = batch.attention_mask.bool()  # [R, L]
    assert not real.all()  # SHORT's row is padded
    with torch.no_grad():
        reference = sequence_logprobs(model, batch.input_ids, batch.attention_mask, temperature=0.7)  # [R, L]
        unmasked = token_logprobs(right_padded_logits(model, batch.input_ids), batch.input_ids, 0.7)  # [R, L]
        last = right_padded_logits(model, batch.input_ids, logits_to_keep=30)  # [R, 30, V]
    torch.testing.assert_close(unmasked[real], reference[real], atol=1e-5, rtol=0)
    assert not torch.allclose(unmasked[~real], reference[~real], atol=1e-3)  # padding itself is scored otherwise
    torch.testing.assert_close(token_logprobs(last, batch.input_ids[:, -30:], 0.7)[:, 1:], unmasked[:, -29:])


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_shared_prefix_forwarded_once_gives_the_rows_logits(attention):
    """shared_prefix_logits: rows sharing their first columns, that prefix forwarded once and the rest on
    its cache, give the one-forward logits of every real token after it; a prefix that overlaps the
    columns asked for is refused."""
    from algo_fixtures import tiny_qwen3
    from stepopsd.logprobs import common_prefix_columns, right_padded_logits, shared_prefix_logits

    model = tiny_qwen3(seed=0, attn_implementation=attention)
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 256, (20,), generator=generator)
    rows = [torch.cat([prompt, torch.randint(0, 256, (n,), generator=generator)]) for n in (9, 4, 13)]
    input_ids = torch.zeros(3, 33, dtype=torch.long)  # right-padded with 0
    for r, row in enumerate(rows):
        input_ids[r, :len(row)] = row
    assert common_prefix_columns(input_ids) >= 20
    with torch.no_grad():
        reference = right_padded_logits(model, input_ids, logits_to_keep=12)  # [3, 12, V]
        shared = shared_prefix_logits(model, input_ids, 20, logits_to_keep=12)  # [3, 12, V]
    for r, row in enumerate(rows):
        real = slice(0, len(row) - (33 - 12))  # the kept columns that hold the row's own tokens
        torch.testing.assert_close(shared[r, real], reference[r, real], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no room"):
        shared_prefix_logits(model, input_ids, 25, logits_to_keep=12)
