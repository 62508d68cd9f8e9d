import json
import math

from stepopsd.evaluate import SeedsEvaluation, save_evaluation


def test_seeds_evaluation_keeps_a_column_without_episodes_as_nan(tmp_path):
    # ALFWorld's eval on Heat/Cool games has no Pick episodes: that column is NaN in every seed
    evaluation = SeedsEvaluation("stepopsd/ALFWorld-v0", 1.0, [{"Heat": 50.0, "Pick": math.nan, "All": 40.0},
                                                                {"Heat": 100.0, "Pick": math.nan, "All": 60.0}], [])
    assert evaluation.mean["Heat"] == 75.0 and math.isnan(evaluation.mean["Pick"])
    assert evaluation.std["Heat"] == 25.0 and evaluation.std["All"] == 10.0 and math.isnan(evaluation.std["Pick"])
    results_path, _ = save_evaluation(evaluation, tmp_path / "eval", model="m")
    results = json.loads(results_path.read_text())
    assert results["success_std"]["All"] == 10.0 and results["success_std"]["Pick"] is None  # JSON null, not NaN
