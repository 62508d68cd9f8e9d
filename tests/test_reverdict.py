"""The verdicts docs/benchmarks.md states for the archived learning benchmarks are what the archives
recompute, under the rule "beats: sign-flip p < 0.05 and the t-interval excludes 0"."""

import json

import reverdict


def test_the_docs_verdicts_are_what_the_archived_runs_recompute():
    archives = [reverdict.archive_verdicts(env) for env in reverdict.learning_archives()]
    assert {a["archive"] for a in archives} >= {"benchmarks/results/errand/errand", "benchmarks/results/alf-expert/alfworld"}
    assert json.loads(reverdict.RECORD.read_text())["archives"] == archives
    section = reverdict.markdown_section({"archives": archives})
    assert section in (reverdict.ROOT / "docs" / "benchmarks.md").read_text()
    errand_gigpo = next(a for a in archives if a["archive"].endswith("errand"))["arms"]["gigpo"]["auc"]
    # the claim the bootstrap alone supported: [+0.1, +2.6]; the t-interval holds 0 and p = 6/32
    assert errand_gigpo["bootstrap"][0] > 0 and errand_gigpo["t_interval"][0] < 0
    assert errand_gigpo["p_sign_flip"] == 6 / 32
    # an archive with a pre-registered primary metric is judged on it first (ErrandChain: `early`)
    independent = next(a for a in archives if a["archive"].endswith("errandchain-independent"))["arms"]["oracle-full"]
    assert independent["early"]["p_sign_flip"] > 0.05 and "primary metric" in independent["verdict"]
    # the eight-errand confirmation (fresh seeds, `late` pre-registered): the bound separates, every seed positive
    late = next(a for a in archives if a["archive"].endswith("errandchain-eight-late"))["arms"]["oracle-full"]
    assert late["late"]["p_sign_flip"] == 2 / 256 and late["late"]["t_interval"][0] > 5.0
    assert "primary metric (mean sampled success, iterations 9-20)" in late["verdict"]


def test_the_docs_tables_of_the_archived_benchmarks_are_what_their_runs_recompute():
    doc = (reverdict.ROOT / "docs" / "benchmarks.md").read_text()
    for env in reverdict.learning_archives():
        rows = reverdict.archive_table_rows(env)
        assert len(rows) >= 3  # the control, one arm and their paired row at least
        missing = [row for row in rows if row not in doc]
        assert not missing, (env, missing)


def test_the_readme_quickstart_figures_are_the_archived_runs():
    summary = json.loads((reverdict.ARCHIVES / "quickstart" / "summary.json").read_text())
    before, after = summary["success_before"]["All"], summary["success_after"]["All"]
    readme = (reverdict.ROOT / "README.md").read_text()
    assert f"greedy held-out success **{before:.1f}% before RL, {after:.1f}% after**" in readme


def test_the_readme_searchqa_quickstart_figures_are_the_archived_runs():
    summary = json.loads((reverdict.ARCHIVES / "quickstart-searchqa" / "summary.json").read_text())
    before, after = summary["success_before"], summary["success_after"]
    readme = " ".join((reverdict.ROOT / "README.md").read_text().split())
    assert (f"{before['All']:.1f}% -> {after['All']:.1f}% EM on 160 held-out questions, multi-hop "
            f"{before['world-multi']:.1f}% -> {after['world-multi']:.1f}%") in readme


def test_the_readme_alfworld_quickstart_figures_are_the_archived_runs():
    summary = json.loads((reverdict.ARCHIVES / "quickstart-alfworld" / "summary.json").read_text())
    readme = " ".join((reverdict.ROOT / "README.md").read_text().split())
    assert f"{summary['success_before']['All']:.1f}% -> {summary['success_after']['All']:.1f}% greedy on 36 held-out games" in readme


def test_the_readme_testbed_figures_are_the_archived_runs_and_audits():
    """README's first paragraph: the bound's gain on ErrandChain, and the best teacher audit among those it counts."""
    from stepopsd.lab.credit_audit import summarize_clusters

    late = json.loads(reverdict.RECORD.read_text())
    bound = next(a for a in late["archives"] if a["archive"].endswith("errandchain-eight-late"))["arms"]["oracle-full"]
    low, high = bound["late"]["t_interval"]
    readme = " ".join((reverdict.ROOT / "README.md").read_text().split())
    assert (f"**{bound['late']['mean']:+.1f} points** of sampled success over iterations 9-20 (8 paired seeds, "
            f"t-interval [{low:+.1f}, {high:+.1f}], sign-flip p = {bound['late']['p_sign_flip']:.2g})") in readme
    audits = reverdict.ARCHIVES / "credit-audit"
    teachers = ["errandchain-eight-hindsight", "errandchain-eight-teacher", "errandchain-eight-teacher-draws",
                "errandchain-eight-teacher-longer", "errandchain-eight-teacher-outcomes"]
    best = max(summarize_clusters([json.loads(path.read_text())["per_trajectory"]
                                   for path in sorted((audits / teacher).glob("seed-*.json"))])
               ["peer_trajectory"]["delta"]["mean"] for teacher in teachers)
    assert f"the best of five ranks the mistaken steps at **AUC {best:.3f}**" in readme
