"""Wiring of the evaluation pipeline."""

from kedro.pipeline import Pipeline, node

from .nodes import compute_metrics, predict_eval_set


def create_pipeline(**kwargs) -> Pipeline:
    """base model + adapter + test split -> predictions -> metrics."""
    return Pipeline(
        [
            node(
                predict_eval_set,
                ["base_model", "lora_adapter", "test_set", "params:generation.task", "params:evaluation"],
                "test_predictions",
                name="predict_test_set",
            ),
            node(compute_metrics, "test_predictions", "test_metrics", name="compute_test_metrics"),
        ]
    )
