"""Wiring of the validation pipeline."""

from kedro.pipeline import Pipeline, node

from .nodes import add_recomputed_labels, gate_on_validation, run_expectation_suite


def create_pipeline(**kwargs) -> Pipeline:
    """curated rows -> recomputed labels -> GX suite -> gate -> model input."""
    return Pipeline(
        [
            node(
                add_recomputed_labels,
                ["curated_train", "params:generation.task"],
                "train_with_checks",
                name="add_recomputed_labels",
            ),
            node(
                run_expectation_suite,
                ["train_with_checks", "train_rows_suite"],
                "train_validation",
                name="run_expectation_suite",
            ),
            node(
                gate_on_validation,
                ["train_validation", "curated_train", "params:validation"],
                "model_input_train",
                name="gate_on_validation",
            ),
        ]
    )
