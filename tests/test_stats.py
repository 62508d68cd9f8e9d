"""lab/stats.py: the t-interval, the exact sign-flip p and the rule for "beats", against hand-computed values."""

import math

import pytest

from stepopsd.lab.stats import paired_difference, sign_flip_p, t_interval, t_quantile


def test_t_quantiles_match_the_tables():
    # Student t, two-sided 95%: df 1 12.706, 2 4.303, 4 2.776, 7 2.365, 30 2.042
    for df, expected in [(1, 12.706), (2, 4.303), (4, 2.776), (7, 2.365), (30, 2.042)]:
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_t_interval_hand_worked():
    # 1, 2, 3: mean 2, sd 1, 4.303 / sqrt(3) = 2.484
    low, high = t_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(-0.484, abs=1e-3) and high == pytest.approx(4.484, abs=1e-3)
    assert all(math.isnan(v) for v in t_interval([1.0]))


def test_sign_flip_p_enumerates_every_assignment():
    # 3, -1, 2: the sums of +-3 +-1 +-2 are 6 4 2 0 0 -2 -4 -6; |sum| >= 4 in 4 of 8
    assert sign_flip_p([3.0, -1.0, 2.0]) == 0.5
    assert sign_flip_p([1.0] * 5) == 2 / 32  # 5 seeds cannot go below 0.0625
    assert sign_flip_p([1.0] * 8) == 2 / 256
    assert sign_flip_p([0.0, 0.0]) == 1.0


def test_a_difference_is_shown_only_when_both_tests_agree():
    eight = paired_difference([5.0, 4.0, 6.0, 5.0, 5.0, 4.0, 6.0, 5.0], [0.0] * 8)
    assert eight.p_sign_flip == 2 / 256 and eight.t_low > 0 and eight.shown() == 1
    five = paired_difference([5.0, 4.0, 6.0, 5.0, 5.0], [0.0] * 5)
    assert five.ci_low > 0 and five.shown() == 0  # the bootstrap alone would have said "beats"
    mixed = paired_difference([5.0, -4.0, 6.0, -5.0, 5.0, 4.0, -6.0, 5.0], [0.0] * 8)
    assert mixed.shown() == 0


def test_the_cluster_bootstrap_carries_the_spread_between_clusters():
    from stepopsd.lab.stats import bootstrap_ci, cluster_bootstrap_ci

    # three teachers, each consistent within itself (AUC 0.6, 0.8 or 1.0 on every trajectory): pooled
    # trajectories look certain to a trajectory bootstrap, not to one that also resamples teachers
    teachers = [[0.6] * 40, [0.8] * 40, [1.0] * 40]
    flat_low, flat_high = bootstrap_ci([v for t in teachers for v in t])
    low, high = cluster_bootstrap_ci(teachers)
    assert flat_high - flat_low < 0.1 and high - low > 0.25
    assert low == pytest.approx(0.6, abs=0.02) and high == pytest.approx(1.0, abs=0.02)


def test_the_credit_audit_pools_seeds_and_resamples_them():
    from stepopsd.lab.credit_audit import summarize_clusters

    per_seed = [{"oracle": {"delta": [1.0, 1.0]}}, {"oracle": {"delta": [0.5]}}]
    cell = summarize_clusters(per_seed)["oracle"]["delta"]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(2.5 / 3)
    assert cell["ci_low"] == pytest.approx(0.5) and cell["ci_high"] == pytest.approx(1.0)


def test_gap_share_is_the_arms_gain_over_the_bounds_with_a_seed_bootstrap():
    from stepopsd.lab.stats import gap_share

    # arm gains 1 and 3 over the control, the bound 2 and 2: 4 / 4 = 100%; a draw of seed 0 twice gives
    # 1/2, of seed 1 twice 3/2, a mixed draw 4/4: the percentile interval spans [50%, 150%]
    share = gap_share([11.0, 23.0], [12.0, 22.0], [10.0, 20.0])
    assert share.share == 1.0 and (share.ci_low, share.ci_high) == (0.5, 1.5)
    assert str(share) == "100% [50%, 150%]"
    nothing = gap_share([11.0, 23.0], [10.0, 20.0], [10.0, 20.0])  # the bound gains nothing: no share
    assert nothing.share != nothing.share and nothing.ci_low != nothing.ci_low
    with pytest.raises(ValueError, match="pairs seeds"):
        gap_share([1.0], [1.0, 2.0], [0.0, 0.0])
