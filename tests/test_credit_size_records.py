"""The credit-size figures docs/benchmarks.md quotes are those of the records benchmarks/credit_size.py wrote."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_pointer_recipes_credit_figures_are_its_record():
    record = json.loads((ROOT / "benchmarks/results/credit-size/errandchain-pointer.json").read_text())
    docs = " ".join((ROOT / "docs/benchmarks.md").read_text(encoding="utf-8").split())
    grpo, bound = record["arms"]["grpo"], record["arms"]["oracle-full"]
    assert f"{record['episodes']} sampled episodes of this start, {100 * record['sampled_success']:.1f}% won, " \
           f"{record['wrong_takes_per_episode']:.2f} wrong takes each" in docs
    assert f"same mean |A| per generated token as GRPO ({grpo['mean_abs_per_token']:.3f})" in docs
    assert abs(bound["mean_abs_per_token"] - grpo["mean_abs_per_token"]) < 5e-4
    cells = bound["cells"]
    assert (f"oracle-full gives a lost episode's right takes {cells['lost decisive']['mean']:+.3f} and its wrong ones "
            f"{cells['lost mistake']['mean']:+.3f}") in docs
    assert (f"a won episode's right takes {cells['won decisive']['mean']:+.3f} and its recovered wrong ones "
            f"{cells['won mistake']['mean']:+.3f} where GRPO gives {grpo['cells']['won decisive']['mean']:+.3f} and "
            f"{grpo['cells']['won mistake']['mean']:+.3f}") in docs


def test_the_eight_errand_starts_figures_are_their_records():
    docs = " ".join((ROOT / "docs/benchmarks.md").read_text(encoding="utf-8").split())
    looping = json.loads((ROOT / "benchmarks/results/credit-size/errandchain-eight.json").read_text())
    assert (f"on 64 sampled episodes it won {100 * looping['sampled_success']:.1f}% with "
            f"{looping['wrong_takes_per_episode']:.2f} wrong takes each") in docs
    record = json.loads((ROOT / "benchmarks/results/credit-size/errandchain-eight-sft6000.json").read_text())
    grpo, bound = record["arms"]["grpo"], record["arms"]["oracle-full"]
    assert (f"one batch of {record['episodes']} sampled episodes, {100 * record['sampled_success']:.1f}% won with "
            f"{record['wrong_takes_per_episode']:.2f} wrong takes each") in docs
    assert f"at GRPO's mean |A| per generated token ({grpo['mean_abs_per_token']:.3f})" in docs
    assert abs(bound["mean_abs_per_token"] - grpo["mean_abs_per_token"]) < 5e-4
    lost_right, lost_wrong = bound["cells"]["lost decisive"]["mean"], bound["cells"]["lost mistake"]["mean"]
    assert (f"gives a lost episode's right takes {lost_right:+.3f} and its wrong ones {lost_wrong:+.3f} where GRPO "
            f"gives {grpo['cells']['lost decisive']['mean']:+.3f} and {grpo['cells']['lost mistake']['mean']:+.3f}") in docs
    assert (f"a won episode's recovered wrong takes {bound['cells']['won mistake']['mean']:+.3f} where GRPO gives "
            f"{grpo['cells']['won mistake']['mean']:+.3f}") in docs
