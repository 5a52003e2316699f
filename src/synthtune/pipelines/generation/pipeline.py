"""Wiring of the generation pipeline."""

from kedro.pipeline import Pipeline, node

from .nodes import (
    build_vocabulary,
    draw_rows,
    make_external_set,
    make_heldout_template_set,
    make_probe_set,
    make_subskill_set,
    make_test_set,
    make_train_set,
    report_distributions,
    split_train_test,
)


def create_pipeline(**kwargs) -> Pipeline:
    """vocabulary -> drawn rows -> train + evaluation sets -> distribution report."""
    return Pipeline(
        [
            node(build_vocabulary, "params:generation.vocabulary", "vocabulary", name="build_vocabulary"),
            node(draw_rows, ["vocabulary", "params:generation"], "drawn_rows", name="draw_rows"),
            node(
                split_train_test,
                ["drawn_rows", "params:generation.n_test"],
                ["train_draws", "test_draws"],
                name="split_train_test",
            ),
            node(make_train_set, ["train_draws", "params:generation"], "raw_train", name="make_train_set"),
            node(make_subskill_set, ["vocabulary", "params:generation"], "raw_subskill", name="make_subskill_set"),
            node(make_test_set, ["test_draws", "params:generation"], "test_set", name="make_test_set"),
            node(
                make_heldout_template_set,
                ["test_draws", "params:generation"],
                "heldout_template_set",
                name="make_heldout_template_set",
            ),
            node(make_probe_set, ["probe_spec", "params:generation"], "probe_set", name="make_probe_set"),
            node(
                make_external_set,
                ["cute_sentences", "cute_words", "params:generation"],
                "external_set",
                name="make_external_set",
            ),
            node(
                report_distributions,
                ["raw_train", "test_set", "probe_set", "heldout_template_set", "external_set", "params:generation"],
                ["distribution_report", "distribution_figure"],
                name="report_distributions",
            ),
        ]
    )
