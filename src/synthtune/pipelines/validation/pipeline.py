"""Wiring of the validation pipeline."""

from kedro.pipeline import Pipeline, node

from .nodes import add_check_columns, derive_expectation_parameters, gate_on_validation, run_expectation_suite

EVAL_SETS = ["test_set", "probe_set", "heldout_template_set", "external_set"]


def create_pipeline(**kwargs) -> Pipeline:
    """curated rows -> check columns -> GX suite (+ Data Docs) -> gate -> model input."""
    return Pipeline(
        [
            node(
                add_check_columns,
                ["curated_train", *EVAL_SETS, "params:generation.task"],
                "train_with_checks",
                name="add_check_columns",
            ),
            node(
                derive_expectation_parameters,
                [*EVAL_SETS, "params:generation.task"],
                "expectation_parameters",
                name="derive_expectation_parameters",
            ),
            node(
                run_expectation_suite,
                ["train_with_checks", "train_rows_suite", "expectation_parameters", "params:validation"],
                ["train_validation", "validation_data_docs"],
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
