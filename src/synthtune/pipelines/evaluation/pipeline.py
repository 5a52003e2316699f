"""Wiring of the evaluation pipeline."""

from kedro.pipeline import Pipeline, node

from .nodes import predict_eval_set, summarise_evaluation


def create_pipeline(**kwargs) -> Pipeline:
    """base model + fine-tuned weights + test split and probes -> predictions -> metrics."""
    return Pipeline(
        [
            node(
                predict_eval_set,
                ["base_model", "fine_tuned", "test_set", "params:generation.task", "params:evaluation"],
                "test_predictions",
                name="predict_test_set",
            ),
            node(
                predict_eval_set,
                ["base_model", "fine_tuned", "probe_set", "params:generation.task", "params:evaluation"],
                "probe_predictions",
                name="predict_probe_set",
            ),
            node(
                summarise_evaluation, ["test_predictions", "probe_predictions"], "metrics", name="summarise_evaluation"
            ),
        ]
    )
